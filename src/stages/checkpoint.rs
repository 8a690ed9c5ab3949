//! The `checkpoint` kind's parameters (`stdlib/checkpoint.msnr`): a model artifact made
//! from a published weight file (a `torch.save` file or safetensors) and the facts a
//! state dict does not hold (the net, its target and schedule, the classes and the data's
//! shape). Checked here before anything runs: the net must fit the stated data, and when
//! the weights are a local file and the net a ViT, the file's names and shapes must be the
//! net's (every missing, unexpected and mis-shaped name listed at `weights`). The worker
//! (`msnr_torch::stages::checkpoint`) matches them strictly in every case (a download, a
//! UNet) and writes the model as `train` does, so `sample` reads either alike.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{ParamError, Reader, Shape, Source};
use super::train::{read_schedule, read_target};
use crate::diffusion::schedule::NamedSchedule;
use crate::diffusion::target::Target;
use crate::lang::codes;
use crate::nets::{check_net, weights_listing, NetContext, NetParams, NetSpec};

/// The `checkpoint` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointParams {
    /// The weight file, or a folder holding exactly one (e.g. a download's output).
    pub weights: Source,
    /// The network the weights belong to.
    pub net: NetParams,
    /// What the network predicts.
    pub target: Target,
    /// The schedule it was trained with.
    pub schedule: NamedSchedule,
    /// Number of classes it is conditioned on (0: unconditional).
    pub classes: i64,
    /// Channels of its images or latents.
    pub channels: i64,
    /// Side of its square images or latents.
    pub size: i64,
    /// The dotted path of the state dict inside the file (`ema`, `state.model`); empty: the top level.
    pub entry: String,
    /// A prefix removed from every name that has it (`module.`, `model.`).
    pub strip: String,
}

impl KindParams for CheckpointParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let weights = r.source("weights");
        let net = NetParams::read(r, "net");
        let target = read_target(r);
        let schedule = read_schedule(r);
        let classes = r.int("classes", 0..);
        let channels = r.int("channels", 1..=64);
        let size = r.int("size", 1..=65_536);
        let entry = r.str("entry").map(|e| e.trim_end_matches('.').to_owned());
        let strip = r.str("strip").map(str::to_owned);
        if let (Some(net), Some(c), Some(s)) = (&net, channels, size) {
            check_fits(r, net, s, c);
        }
        let p = Self {
            weights: weights?,
            net: net?,
            target: target?,
            schedule: schedule?,
            classes: classes?,
            channels: channels?,
            size: size?,
            entry: entry?,
            strip: strip?,
        };
        if let Err(message) = p.check_local_weights() {
            let help = "state the net the weights were trained with (`time_rows`/`null_class` for the seed's tables), \
                        or pick the state dict with `entry` and `strip`";
            return r.fail(ParamError::new("weights", message).with_help(help));
        }
        Some(p)
    }

    /// A model has no image shape for the checker.
    fn shape(&self, _r: &Reader<'_>) -> Shape {
        Shape::UNKNOWN
    }
}

/// File endings taken as weight files (as the worker's).
const WEIGHT_FILES: [&str; 5] = ["pt", "pth", "bin", "ckpt", "safetensors"];

impl CheckpointParams {
    /// For a local weight file and a ViT, the file's tensors (under `entry`, `strip` removed)
    /// against the net's parameters; anything else is left to the worker.
    fn check_local_weights(&self) -> Result<(), String> {
        let Source::Path(path) = &self.weights else { return Ok(()) };
        let Some(file) = weight_file(path) else { return Ok(()) };
        let steps = i64::try_from(self.schedule.steps()).unwrap_or(i64::MAX);
        let ctx = NetContext { image_size: self.size, channels: self.channels, num_classes: self.classes, steps };
        let NetSpec::ViT(cfg) = NetSpec::new(&self.net, &ctx) else { return Ok(()) };
        if cfg.validate().is_err() {
            return Ok(()); // reported at `net` already
        }
        let found = read_shapes(&file, &self.entry).map_err(|e| format!("{}: {e}", file.display()))?;
        let found: BTreeMap<String, Vec<i64>> = found
            .into_iter()
            .map(|(name, shape)| match name.strip_prefix(self.strip.as_str()) {
                Some(rest) if !self.strip.is_empty() => (rest.to_owned(), shape),
                _ => (name, shape),
            })
            .collect();
        let want = cfg.parameter_shapes();
        let missing: Vec<String> = want.keys().filter(|k| !found.contains_key(*k)).cloned().collect();
        let unexpected: Vec<String> = found.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        let mismatched: Vec<String> = want
            .iter()
            .filter_map(|(name, w)| {
                found.get(name).filter(|f| *f != w).map(|f| format!("{name}: expected {w:?}, found {f:?}"))
            })
            .collect();
        if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the weights in {} do not match the net{}",
            file.display(),
            weights_listing(&missing, &unexpected, &mismatched)
        ))
    }
}

/// `path` when it is a file, or the one weight file in folder `path`; `None` when there is
/// none or several (the worker then says so).
fn weight_file(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| WEIGHT_FILES.contains(&e)))
        .collect();
    (found.len() == 1).then(|| found.remove(0))
}

/// The names and shapes of the tensors in `file` under `entry` (a dotted path; empty: all):
/// a safetensors header, or a `torch.save` file read by `msnr-torchfile`.
fn read_shapes(file: &Path, entry: &str) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let shape = |dims: &[usize]| dims.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect::<Vec<i64>>();
    let all: BTreeMap<String, Vec<i64>> = if file.extension().is_some_and(|e| e == "safetensors") {
        let prefix = if entry.is_empty() { String::new() } else { format!("{entry}.") };
        safetensors_shapes(file)?
            .into_iter()
            .filter_map(|(name, s)| name.strip_prefix(&prefix).map(|rest| (rest.to_owned(), s)))
            .collect()
    } else {
        let ckpt = torchfile::load(file).map_err(|e| e.to_string())?;
        let prefix = (!entry.is_empty()).then_some(entry);
        ckpt.require_tensors(prefix).map_err(|e| e.to_string())?;
        ckpt.into_tensors(prefix).into_iter().map(|(name, t)| (name, shape(&t.shape))).collect()
    };
    if all.is_empty() {
        return Err(format!("no tensor under entry `{entry}`"));
    }
    Ok(all)
}

/// The tensor shapes in a safetensors file's header (the data is not read).
fn safetensors_shapes(file: &Path) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(format!("a safetensors header of {len} bytes"));
    }
    let mut header = vec![0u8; usize::try_from(len).unwrap_or(0)];
    f.read_exact(&mut header).map_err(|e| e.to_string())?;
    let json: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header).map_err(|e| e.to_string())?;
    Ok(json
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, info)| {
            let dims = info["shape"].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect());
            (name, dims.unwrap_or_default())
        })
        .collect())
}

/// The net must take `size` x `size` x `channels` inputs.
fn check_fits(r: &mut Reader<'_>, net: &NetParams, size: i64, channels: i64) {
    let (Ok(s), Ok(c)) = (u32::try_from(size), u32::try_from(channels)) else { return };
    if let Err((param, message)) = check_net(net, s, c) {
        let message = format!("{message} (the checkpoint's data: {channels}x{size}x{size})");
        let help = "state the net and the data shape the weights were trained with";
        r.fail::<()>(ParamError::new(param, message).with_help(help).with_code(codes::DATA_DOES_NOT_FIT_NET));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lang::Value;
    use crate::stages::check::defaults_for;

    fn read(overrides: &[(&'static str, Value)]) -> Result<CheckpointParams, Vec<ParamError>> {
        let mut params = defaults_for("checkpoint");
        params.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let none = |_: &str| Shape::UNKNOWN;
        let mut r = Reader::new(&params, &none, None);
        let got = CheckpointParams::read(&mut r);
        r.finish(got)
    }

    #[test]
    fn reads_the_seeds_xl_setup() {
        let p = read(&[
            ("channels", Value::Int(4)),
            ("size", Value::Int(32)),
            ("classes", Value::Int(1000)),
            ("entry", Value::Str("ema.".into())),
        ])
        .unwrap();
        assert_eq!((p.channels, p.size, p.classes, p.entry.as_str()), (4, 32, 1000, "ema"));
        assert_eq!(p.schedule, NamedSchedule::Cosine { steps: 1000 });
    }

    /// The seed-layout fixture (made by the torch crate's `tests/fixtures/checkpoint/make_fixtures.py`).
    fn seed_file() -> Value {
        Value::Path(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/torch/tests/fixtures/checkpoint/seed_vit_xl_layout.pt"),
        )
    }

    fn tiny_vit(time_rows: i64) -> Value {
        let Value::Ctor { name, mut args } = defaults_for("checkpoint").remove("net").unwrap() else { unreachable!() };
        for (k, v) in [("depth", 2), ("width", 32), ("heads", 4), ("patch", 2), ("time_rows", time_rows)] {
            args.insert(k.to_owned(), Value::Int(v));
        }
        Value::Ctor { name, args }
    }

    #[test]
    fn a_local_weight_file_is_matched_against_the_net_before_running() {
        let base = [
            ("weights", seed_file()),
            ("classes", Value::Int(10)),
            ("channels", Value::Int(4)),
            ("size", Value::Int(8)),
        ];
        let with = |net: Value| base.iter().cloned().chain([("net", net)]).collect::<Vec<_>>();
        read(&with(tiny_vit(4000))).unwrap();
        let errors = read(&with(tiny_vit(0))).unwrap_err();
        assert_eq!(errors[0].param, "weights");
        assert!(
            errors[0].message.ends_with(
                "do not match the net\n  wrong shape (1):\n    time_embedding.weight: expected [1000, 32], found [4000, 32]"
            ),
            "{}",
            errors[0].message
        );
        let mut nested = with(tiny_vit(4000));
        nested.push(("entry", Value::Str("ema".into())));
        assert!(read(&nested).unwrap_err()[0].message.contains("ema"));
    }

    #[test]
    fn the_net_must_fit_the_stated_data() {
        let errors = read(&[("channels", Value::Int(3)), ("size", Value::Int(33))]).unwrap_err();
        assert_eq!(errors[0].param, "net.patch");
        assert!(errors[0].message.ends_with("(the checkpoint's data: 3x33x33)"), "{}", errors[0].message);
        let bad = read(&[("classes", Value::Int(-1)), ("channels", Value::Int(0))]).unwrap_err();
        let params: BTreeMap<&str, &str> = bad.iter().map(|e| (e.param.as_str(), e.message.as_str())).collect();
        assert!(params.contains_key("classes") && params.contains_key("channels"), "{params:?}");
    }
}
