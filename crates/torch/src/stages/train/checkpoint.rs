//! Checkpoints in the stage's work folder: model, EMA and optimizer state, the
//! step, the loss scaler and the log's sums since its last record. Written to
//! `ckpt.tmp/`, flushed to disk, and swapped in by rename (the previous one kept
//! as `ckpt.old/` until the new one is in place), so a crash or power loss at
//! any moment leaves a whole checkpoint; one that cannot be read falls back to
//! the other. Every random draw of step `k` derives from (seed, k), so no
//! generator state is needed to resume exactly.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use super::log::{SavedSums, Sums};
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
    /// The log's sums since its last record.
    #[serde(default)]
    log: SavedSums,
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
    /// The log's sums since its last record.
    pub log: &'a mut Sums,
}

fn dir(work: &Path) -> PathBuf {
    work.join("ckpt")
}

/// Saves after `step` completed steps.
///
/// # Errors
/// When a file cannot be written or flushed.
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
    let state = State { step, scaler: *parts.scaler, log: (*parts.log).into() };
    let state = serde_json::to_vec(&state).expect("state serializes");
    std::fs::write(tmp.join("state.json"), state).map_err(|e| StageError::io(tmp.join("state.json"), e))?;
    for file in FILES {
        sync(&tmp.join(file))?;
    }
    sync(&tmp)?;
    let (current, old) = (dir(work), work.join("ckpt.old"));
    if current.exists() {
        // Only now is `old` redundant: `current` is whole and becomes the new `old`.
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&current, &old).map_err(|e| StageError::io(&current, e))?;
    }
    std::fs::rename(&tmp, &current).map_err(|e| StageError::io(&current, e))?;
    sync(work)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The files of a checkpoint; `state.json` is written last.
const FILES: [&str; 4] = ["model.safetensors", "opt.safetensors", "ema.safetensors", "state.json"];

/// Flushes a file or folder (its entries) to disk.
fn sync(path: &Path) -> Result<(), StageError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| StageError::io(path, e))
}

/// Loads the newest checkpoint that reads back whole, if any, and returns its step.
///
/// # Errors
/// When checkpoints exist but none can be read (the first one's files named).
pub fn load(work: &Path, parts: &mut Parts<'_>) -> Result<Option<u64>, StageError> {
    let found: Vec<PathBuf> =
        [dir(work), work.join("ckpt.old")].into_iter().filter(|d| d.join("state.json").exists()).collect();
    let mut first_error = None;
    for dir in &found {
        match load_from(dir, parts) {
            Ok(step) => return Ok(Some(step)),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        Some(StageError::Failed(message)) => {
            Err(StageError::Failed(format!("{message} (delete {} to train from the start)", work.display())))
        }
        Some(other) => Err(other),
        None => Ok(None),
    }
}

/// Reads the checkpoint in `found` into `parts`: every part is overwritten, so a failed attempt
/// leaves nothing that a later one keeps.
fn load_from(found: &Path, parts: &mut Parts<'_>) -> Result<u64, StageError> {
    let failed = |e: &dyn std::fmt::Display| StageError::Failed(format!("reading checkpoint {}: {e}", found.display()));
    let state: State = serde_json::from_slice(&std::fs::read(found.join("state.json")).map_err(|e| failed(&e))?)
        .map_err(|e| failed(&e))?;
    parts.vs.load(found.join("model.safetensors")).map_err(|e| failed(&e))?;
    parts.opt.load(&found.join("opt.safetensors")).map_err(|e| failed(&e))?;
    parts.ema.load(&found.join("ema.safetensors")).map_err(|e| failed(&e))?;
    *parts.scaler = state.scaler;
    *parts.log = state.log.into();
    Ok(state.step)
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, Module as _};
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::diffusion::flat::FlatParams;
    use crate::diffusion::optimizer::AdamWConfig;

    /// A tiny model's training state: store, flat parameters, optimizer, EMA.
    struct Run {
        vs: VarStore,
        params: FlatParams,
        opt: AdamW,
        ema: Ema,
        scaler: Option<LossScaler>,
        sums: Sums,
    }

    fn run() -> Run {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "lin", 3, 2, nn::LinearConfig::default());
        let params = FlatParams::new(&vs).unwrap();
        let (opt, ema) = (AdamW::new(&params, AdamWConfig::default()), Ema::new(&params, 0.9, false));
        let mut run = Run { vs, params, opt, ema, scaler: None, sums: Sums::default() };
        for _ in 0..3 {
            run.params.clear_grads();
            lin.forward(&Tensor::ones([4, 3], (Kind::Float, Device::Cpu))).sum(Kind::Float).backward();
            run.params.attach_grads();
            run.opt.step(&run.params);
            run.ema.update(&run.params);
        }
        run
    }

    fn save_run(work: &Path, step: u64, r: &mut Run) {
        let parts = Parts { vs: &mut r.vs, opt: &mut r.opt, ema: &mut r.ema, scaler: &mut r.scaler, log: &mut r.sums };
        save(work, step, &parts).unwrap();
    }

    fn load_run(work: &Path, r: &mut Run) -> Result<Option<u64>, StageError> {
        let mut parts =
            Parts { vs: &mut r.vs, opt: &mut r.opt, ema: &mut r.ema, scaler: &mut r.scaler, log: &mut r.sums };
        load(work, &mut parts)
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_previous_one_and_two_name_the_fix() {
        let work = tempfile::tempdir().unwrap();
        let mut trained = run();
        save_run(work.path(), 3, &mut trained);
        assert!(!work.path().join("ckpt.old").exists() && !work.path().join("ckpt.tmp").exists());
        // A crash between the two renames of the next save: only `ckpt.old` is whole, and a
        // damaged `ckpt` is there too (e.g. after a power loss).
        std::fs::rename(work.path().join("ckpt"), work.path().join("ckpt.old")).unwrap();
        std::fs::create_dir(work.path().join("ckpt")).unwrap();
        std::fs::write(work.path().join("ckpt/state.json"), b"{\"step\": 9}").unwrap();
        let mut fresh = run();
        let _ = fresh.params.data().shallow_clone().fill_(0.0);
        assert_eq!(load_run(work.path(), &mut fresh).unwrap(), Some(3));
        assert!(fresh.params.data().equal(trained.params.data()), "the previous checkpoint's weights");
        // The next save keeps the whole one until the new one is in place, then drops it.
        save_run(work.path(), 6, &mut fresh);
        assert!(!work.path().join("ckpt.old").exists());
        assert_eq!(load_run(work.path(), &mut run()).unwrap(), Some(6));
        // Nothing readable: an error that says how to start over.
        std::fs::write(work.path().join("ckpt/model.safetensors"), b"torn").unwrap();
        let err = load_run(work.path(), &mut run()).unwrap_err().to_string();
        assert!(err.contains("model.safetensors") || err.contains("ckpt"), "{err}");
        assert!(err.contains("to train from the start"), "{err}");
    }
}
