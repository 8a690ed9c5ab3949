//! The `checkpoint` stage: a published weight file (`torch.save` via `msnr-torchfile`, or
//! safetensors) turned into a model artifact laid out as `train` writes one
//! (`ema.safetensors` and `model.safetensors` with the net's names, `config.json` with the
//! net, target and schedule under `params` and the data's facts under `data`), so `sample`
//! reads it alike. The state dict is matched strictly against the net, as PyTorch's
//! `load_state_dict(strict=True)`: one error lists every missing, unexpected and
//! mis-shaped name, naming the stage and the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::fid::single_file;
use crate::diffusion::models::{self, load_state_dict, ModelError, NetContext, NetSpec};
use msnr::nets::weights_listing;
use msnr::stages::checkpoint::CheckpointParams;
use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

/// File endings taken as weight files.
const WEIGHT_FILES: [&str; 5] = ["pt", "pth", "bin", "ckpt", "safetensors"];

/// Runs the stage (the worker's entry for kind `checkpoint`).
///
/// # Errors
/// An unreadable file, an entry it does not hold, a net that cannot be built, or names
/// and shapes that differ from the net's (each listed).
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let p: CheckpointParams = spec.typed()?;
    let file = single_file(&spec.source_dir(&p.weights)?, &WEIGHT_FILES)?;
    let bad = |message: String| StageError::Input { path: file.clone(), message };
    let tensors = read_state_dict(&file, &p.entry, &p.strip).map_err(bad)?;
    let schedule = p.schedule.build().map_err(|e| StageError::param("schedule", e.to_string()))?;
    let steps = i64::try_from(schedule.steps()).unwrap_or(i64::MAX);
    let ctx = NetContext { image_size: p.size, channels: p.channels, num_classes: p.classes, steps };
    let vs = VarStore::new(Device::Cpu);
    let net_spec = NetSpec::new(&p.net, &ctx);
    models::build(vs.root(), &net_spec).map_err(|e| {
        let (param, message) = e.into_param();
        StageError::param(&param, message)
    })?;
    load_state_dict(&vs, &tensors, &file).map_err(|e| mismatch(spec, &file, e))?;
    let count: usize = vs.variables().values().map(Tensor::numel).sum();
    reporter.log(&format!("{}: {} tensors, {count} parameters, loaded strictly", file.display(), tensors.len()));
    write_model(spec, &vs, &p)?;
    let mut metrics = BTreeMap::new();
    #[allow(clippy::cast_precision_loss)] // parameter counts are far below 2^52
    metrics.insert("parameters".to_string(), count as f64);
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

/// The tensors of `file` under `entry` (a dotted path; empty: all), with `strip` removed
/// from the names that start with it, as float32 CPU tensors.
///
/// # Errors
/// An unreadable file, or an entry that holds no tensor (naming the file's top-level entries).
pub fn read_state_dict(file: &Path, entry: &str, strip: &str) -> Result<HashMap<String, Tensor>, String> {
    let tensors: Vec<(String, Tensor)> = if file.extension().is_some_and(|e| e == "safetensors") {
        let all = Tensor::read_safetensors(file).map_err(|e| e.to_string())?;
        let prefix = if entry.is_empty() { String::new() } else { format!("{entry}.") };
        let found: Vec<(String, Tensor)> = all
            .into_iter()
            .filter_map(|(name, t)| name.strip_prefix(&prefix).map(|rest| (rest.to_owned(), t)))
            .collect();
        if found.is_empty() {
            return Err(format!("no tensor under entry `{entry}`"));
        }
        found
    } else {
        let ckpt = torchfile::load(file).map_err(|e| e.to_string())?;
        let prefix = (!entry.is_empty()).then_some(entry);
        if ckpt.get(entry).is_none() {
            ckpt.require_tensors(prefix).map_err(|e| e.to_string())?;
        }
        let found = ckpt.into_tensors(prefix);
        if found.is_empty() {
            return Err(format!("no tensor under entry `{entry}`"));
        }
        found.into_iter().map(|(name, t)| (name, to_tch(&t))).collect()
    };
    Ok(tensors
        .into_iter()
        .map(|(name, t)| {
            let name = match name.strip_prefix(strip) {
                Some(rest) if !strip.is_empty() => rest.to_owned(),
                _ => name,
            };
            (name, t.to_kind(tch::Kind::Float))
        })
        .collect())
}

/// A `torch.save` tensor as a float32 tch tensor of its shape.
fn to_tch(t: &torchfile::Tensor) -> Tensor {
    let shape: Vec<i64> = t.shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
    Tensor::from_slice(&t.to_f32()).view(shape.as_slice())
}

/// The strict-loading error, every name listed, naming the stage and the file.
fn mismatch(spec: &StageSpec, file: &Path, e: ModelError) -> StageError {
    let message = match e {
        ModelError::Weights { missing, unexpected, mismatched, .. } => format!(
            "stage `{}`: the weights do not match its net{}",
            spec.name,
            weights_listing(&missing, &unexpected, &mismatched)
        ),
        other => format!("stage `{}`: {other}", spec.name),
    };
    StageError::Input { path: file.to_path_buf(), message }
}

/// Writes the model as `train` does: the same weights as `ema.safetensors` and
/// `model.safetensors` (a published file holds one set), and `config.json`.
fn write_model(spec: &StageSpec, vs: &VarStore, p: &CheckpointParams) -> Result<(), StageError> {
    let out = &spec.out_dir;
    let (ema, raw) = (out.join("ema.safetensors"), out.join("model.safetensors"));
    vs.save(&ema).map_err(|e| StageError::Failed(format!("writing {}: {e}", ema.display())))?;
    if std::fs::hard_link(&ema, &raw).is_err() {
        std::fs::copy(&ema, &raw).map_err(|e| StageError::io(&raw, e))?;
    }
    let params: BTreeMap<&str, &msnr::lang::Value> =
        ["net", "target", "schedule"].iter().filter_map(|k| spec.params.get(*k).map(|v| (*k, v))).collect();
    let config = serde_json::json!({
        "params": params,
        "data": { "channels": p.channels, "height": p.size, "width": p.size, "num_classes": p.classes },
        "source": { "kind": "checkpoint", "entry": p.entry, "strip": p.strip },
    });
    let path: PathBuf = out.join("config.json");
    let text = serde_json::to_string_pretty(&config).expect("config serializes");
    std::fs::write(&path, text).map_err(|e| StageError::io(path, e))
}
