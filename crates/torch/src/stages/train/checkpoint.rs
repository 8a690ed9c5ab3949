//! Checkpoints in the stage's work folder: model, EMA and optimizer state and
//! the step, written to `ckpt.tmp/` and swapped in by rename, so a crash at any
//! moment leaves either the previous or the new checkpoint whole. Every random
//! draw of step `k` derives from (seed, k), so no generator state is needed to
//! resume exactly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::diffusion::ema::Ema;
use crate::diffusion::optimizer::AdamW;
use crate::diffusion::scaler::LossScaler;
use msnr::stages::StageError;

/// `state.json` of a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// Optimizer steps completed.
    step: u64,
    /// The float16 loss scaler's state, when training in float16.
    #[serde(default)]
    scaler: Option<LossScaler>,
}

/// The training state a checkpoint holds.
pub struct Parts<'a> {
    /// The model's variables.
    pub vs: &'a mut VarStore,
    /// The optimizer.
    pub opt: &'a mut AdamW,
    /// The EMA.
    pub ema: &'a mut Ema,
    /// The float16 loss scaler, if any.
    pub scaler: &'a mut Option<LossScaler>,
}

fn dir(work: &Path) -> PathBuf {
    work.join("ckpt")
}

/// Saves after `step` completed steps.
///
/// # Errors
/// When a file cannot be written.
///
/// # Panics
/// Never: the step state always serializes.
pub fn save(work: &Path, step: u64, parts: &Parts<'_>) -> Result<(), StageError> {
    let tmp = work.join("ckpt.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| StageError::io(&tmp, e))?;
    let failed =
        |e: &dyn std::fmt::Display| StageError::Failed(format!("writing checkpoint in {}: {e}", tmp.display()));
    parts.vs.save(tmp.join("model.safetensors")).map_err(|e| failed(&e))?;
    parts.opt.save(&tmp.join("opt.safetensors")).map_err(|e| failed(&e))?;
    parts.ema.save(&tmp.join("ema.safetensors")).map_err(|e| failed(&e))?;
    let state = serde_json::to_vec(&State { step, scaler: *parts.scaler }).expect("state serializes");
    std::fs::write(tmp.join("state.json"), state).map_err(|e| StageError::io(tmp.join("state.json"), e))?;
    let old = work.join("ckpt.old");
    let _ = std::fs::remove_dir_all(&old);
    if dir(work).exists() {
        std::fs::rename(dir(work), &old).map_err(|e| StageError::io(dir(work), e))?;
    }
    std::fs::rename(&tmp, dir(work)).map_err(|e| StageError::io(dir(work), e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Loads the newest whole checkpoint, if any, and returns its step.
///
/// # Errors
/// A checkpoint that exists but cannot be read (its files named).
pub fn load(work: &Path, parts: &mut Parts<'_>) -> Result<Option<u64>, StageError> {
    let Some(found) = [dir(work), work.join("ckpt.old")].into_iter().find(|d| d.join("state.json").exists()) else {
        return Ok(None);
    };
    let failed = |e: &dyn std::fmt::Display| StageError::Failed(format!("reading checkpoint {}: {e}", found.display()));
    let state: State = serde_json::from_slice(&std::fs::read(found.join("state.json")).map_err(|e| failed(&e))?)
        .map_err(|e| failed(&e))?;
    parts.vs.load(found.join("model.safetensors")).map_err(|e| failed(&e))?;
    parts.opt.load(&found.join("opt.safetensors")).map_err(|e| failed(&e))?;
    parts.ema.load(&found.join("ema.safetensors")).map_err(|e| failed(&e))?;
    *parts.scaler = state.scaler;
    Ok(Some(state.step))
}
