//! The `fid` stage: FID and KID of a set of images against a reference, with pytorch-fid's
//! Inception-v3 ([`crate::diffusion::models::inception`]) and the float64 metrics of
//! [`crate::metrics`]. The reference is a dataset (its features give both FID and KID) or
//! an `.npz` with `mu` and `sigma` (FID only: KID needs the reference's features).
//! Output: `metrics.json` (`fid`, `kid`, `kid_std`, `n`, `n_reference`, `features`) and `stats.npz`
//! (the samples' `mu` and `sigma`, as pytorch-fid's `--save-stats` writes them).
//!
//! The feature network is pytorch-fid's Inception ([`crate::diffusion::models::inception`]),
//! NVIDIA's `TorchScript` detector ([`crate::diffusion::models::detector`], EDM's protocol;
//! told apart by the weight file's content), or a `classifier` stage's network. The
//! `fid_reference` kind ([`run_reference`]) computes a reference's features and statistics
//! once, as their own cached artifact; `fid` reads them when `reference` names it, after
//! checking that they come from the same feature network (its weights' hash).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Device, Tensor};

use msnr::data::reader::{Dataset, Images};
use msnr::stages::fid::FidParams;
use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

use super::classifier::Classifier;
use crate::diffusion::models::detector::{is_torchscript, Detector};
use crate::diffusion::models::inception::{load_inception, FidInceptionV3};
use crate::metrics::npz::{read_statistics, write_statistics};
use crate::metrics::{frechet_distance, kid, KidConfig, Statistics};
use msnr::stages::fid::FidReferenceParams;
use msnr::stages::params::{ParamError, Source};

/// The feature network's name, recorded next to the numbers.
const FEATURES: &str = "inception-v3 pool3 (pytorch-fid)";

/// The `TorchScript` detector's name, recorded next to the numbers.
const DETECTOR: &str = "inception-v3 pool3 (NVIDIA TorchScript detector, as EDM's fid.py)";

/// The file in a `fid_reference` artifact that says which network made it.
const REFERENCE_JSON: &str = "reference.json";

/// The feature network a `fid` or `fid_reference` stage names (its `classifier`, else the
/// Inception weights `inception` gives), on the stage's device, and its batch as an `i64`.
fn feature_net<'a>(
    spec: &StageSpec,
    classifier: Option<&Source>,
    inception: impl FnOnce() -> Result<&'a Source, ParamError>,
    batch: u64,
) -> Result<(FeatureNet, i64), StageError> {
    let device = if spec.device == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let inception = match classifier {
        Some(_) => None,
        None => Some(inception().map_err(|e| StageError::param("inception", e.message))?),
    };
    let net = FeatureNet::load(spec, inception, classifier, device)?;
    Ok((net, i64::try_from(batch).unwrap_or(i64::MAX)))
}

/// Runs the stage (the worker's entry for kind `fid`).
///
/// # Errors
/// Unreadable inputs or weights, images the network cannot take, a reference that is
/// neither a dataset nor statistics, each named.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let params: FidParams = spec.typed()?;
    let (net, batch) = feature_net(spec, params.classifier.as_ref(), || params.inception(), params.batch)?;
    let (samples, labels) = features(&net, &spec.source_dir(&params.samples)?, "samples", batch, reporter)?;
    let stats = Statistics::of_features(&samples, "samples").map_err(metric)?;
    let reference_dir = spec.source_dir(&params.reference)?;
    let (reference, ref_features) = if reference_dir.join(REFERENCE_JSON).is_file() {
        let (stats, f) = read_reference(&reference_dir, &net)?;
        reporter.log(&format!(
            "reference: cached statistics of {} images from {}",
            f.size()[0],
            reference_dir.display()
        ));
        (stats, Some(f))
    } else if Dataset::is_dataset(&reference_dir) {
        let (f, _) = features(&net, &reference_dir, "reference", batch, reporter)?;
        (Statistics::of_features(&f, "reference").map_err(metric)?, Some(f))
    } else {
        let npz = single_file(&reference_dir, &["npz"])?;
        (read_statistics(&npz).map_err(metric)?, None)
    };
    let mut metrics = BTreeMap::new();
    metrics.insert(net.distance_name().to_string(), frechet_distance(&stats, &reference).map_err(metric)?);
    metrics.insert("n".to_string(), count(&samples));
    if let Some(f) = &ref_features {
        metrics.insert("n_reference".to_string(), count(f));
        let cfg = KidConfig {
            subsets: usize::try_from(params.kid_subsets).unwrap_or(usize::MAX),
            subset_size: usize::try_from(params.kid_subset_size).unwrap_or(usize::MAX),
            ..KidConfig::default()
        };
        let k = kid(&samples, f, &cfg).map_err(metric)?;
        metrics.insert("kid".to_string(), k.mean);
        metrics.insert("kid_std".to_string(), k.std);
    } else {
        reporter.log("reference given as statistics (.npz): FID only, KID needs the reference's features");
    }
    if let Some(accuracy) = labels {
        metrics.insert("class_accuracy".to_string(), accuracy);
    }
    write_outputs(spec, &stats, &metrics, net.description())?;
    let name = net.distance_name();
    reporter.log(&format!("{name} {:.4} over n = {} images ({})", metrics[name], metrics["n"], net.description()));
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

/// The network whose features the distance is computed in, and its identity (the kind and
/// its weights' content hash) that a cached reference must share.
struct FeatureNet {
    net: Net,
    identity: String,
}

/// The feature networks.
enum Net {
    /// pytorch-fid's Inception-v3, and the store that owns its weights.
    Inception(Box<FidInceptionV3>, #[allow(dead_code)] VarStore),
    /// NVIDIA's `TorchScript` Inception-v3, called as EDM's fid.py calls it.
    Detector(Box<Detector>),
    /// A `classifier` stage's network.
    Classifier(Box<Classifier>),
}

impl FeatureNet {
    /// The classifier when one is given, else Inception with its weights (the `TorchScript`
    /// detector when the file is a `TorchScript` archive).
    fn load(
        spec: &StageSpec,
        inception: Option<&Source>,
        classifier: Option<&Source>,
        device: Device,
    ) -> Result<Self, StageError> {
        let identity = |kind: &str, path: &Path| -> Result<String, StageError> {
            let hash = msnr::cache::hash_path(path).map_err(|e| StageError::Failed(e.to_string()))?;
            Ok(format!("{kind}:{hash}"))
        };
        if let Some(source) = classifier {
            let dir = spec.source_dir(source)?;
            let net = Net::Classifier(Box::new(Classifier::load(&dir, device)?));
            return Ok(Self { net, identity: identity("classifier", &dir)? });
        }
        let Some(inception) = inception else {
            return Err(StageError::param("inception", "no Inception weights and no classifier given"));
        };
        let weights = single_file(&spec.source_dir(inception)?, &["pth", "pt", "safetensors"])?;
        if is_torchscript(&weights) {
            let bad = |message: String| StageError::Input { path: weights.clone(), message };
            let net = Net::Detector(Box::new(Detector::load(&weights, device).map_err(bad)?));
            return Ok(Self { net, identity: identity("detector", &weights)? });
        }
        let vs = VarStore::new(device);
        let net = FidInceptionV3::new(&vs.root());
        load_weights(&vs, &weights)?;
        Ok(Self { net: Net::Inception(Box::new(net), vs), identity: identity("inception", &weights)? })
    }

    /// The metric's name: FID only for Inception's features.
    fn distance_name(&self) -> &'static str {
        match self.net {
            Net::Inception(..) | Net::Detector(_) => "fid",
            Net::Classifier(_) => "classifier_distance",
        }
    }

    /// The feature network, recorded next to the numbers.
    fn description(&self) -> &'static str {
        match self.net {
            Net::Inception(..) => FEATURES,
            Net::Detector(_) => DETECTOR,
            Net::Classifier(_) => "classifier stage (LeNet, 128-d hidden layer)",
        }
    }
}

/// Runs a `fid_reference` stage (the worker's entry for that kind): the reference images'
/// features (`features.safetensors`, float32 `[n, d]`) and statistics (`stats.npz`), and
/// `reference.json` naming the feature network, so `fid` stages read them instead of
/// recomputing them.
///
/// # Errors
/// As `fid`'s reading of a reference dataset.
pub fn run_reference(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let params: FidReferenceParams = spec.typed()?;
    let (net, batch) = feature_net(spec, params.classifier.as_ref(), || params.inception(), params.batch)?;
    let (f, _) = features(&net, &spec.source_dir(&params.images)?, "reference", batch, reporter)?;
    let stats = Statistics::of_features(&f, "reference").map_err(metric)?;
    write_statistics(&stats, &spec.out_dir.join("stats.npz")).map_err(metric)?;
    let path = spec.out_dir.join("features.safetensors");
    Tensor::write_safetensors(&[("features", &f)], &path)
        .map_err(|e| StageError::Failed(format!("writing {}: {e}", path.display())))?;
    let info = serde_json::json!({ "network": net.identity, "features": net.description(), "n": f.size()[0] });
    let path = spec.out_dir.join(REFERENCE_JSON);
    std::fs::write(&path, serde_json::to_string_pretty(&info).unwrap_or_default() + "\n")
        .map_err(|e| StageError::io(path, e))?;
    reporter.log(&format!("reference statistics of {} images ({})", f.size()[0], net.description()));
    let mut metrics = BTreeMap::new();
    metrics.insert("n".to_string(), count(&f));
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

/// A `fid_reference` artifact's statistics and features, refused unless `net` made them.
fn read_reference(dir: &Path, net: &FeatureNet) -> Result<(Statistics, Tensor), StageError> {
    let path = dir.join(REFERENCE_JSON);
    let bad = |message: String| StageError::Input { path: path.clone(), message };
    let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
    let info: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let network = info["network"].as_str().unwrap_or_default();
    if network != net.identity {
        return Err(bad(format!(
            "the reference's features come from another network ({network}, {}) than this stage's ({}, {}); \
             give both stages the same `inception` or `classifier`",
            info["features"].as_str().unwrap_or("?"),
            net.identity,
            net.description()
        )));
    }
    let stats = read_statistics(&dir.join("stats.npz")).map_err(metric)?;
    let file = dir.join("features.safetensors");
    let features = Tensor::read_safetensors(&file)
        .ok()
        .and_then(|v| v.into_iter().find(|(name, _)| name == "features").map(|(_, t)| t))
        .ok_or_else(|| StageError::Input { path: file.clone(), message: "no `features` tensor".into() })?;
    Ok((stats, features))
}

/// The features of the dataset at `dir`, `batch` images at a time, and, with a classifier
/// and labelled images, the share of images it gives their own label.
fn features(
    net: &FeatureNet,
    dir: &Path,
    what: &str,
    batch: i64,
    reporter: &dyn Reporter,
) -> Result<(Tensor, Option<f64>), StageError> {
    let input = |message: String| StageError::Input { path: dir.to_path_buf(), message: format!("{what}: {message}") };
    let data = Dataset::open(dir).map_err(|e| input(e.to_string()))?;
    let m = data.manifest().clone();
    if m.count < 2 {
        return Err(input(format!("{} images; a Frechet distance needs at least 2", m.count)));
    }
    let (images, labels) = data.read_all().map_err(|e| input(e.to_string()))?;
    let Images::U8(bytes) = images else {
        return Err(input("latents, not images: decode them first (FID scores images)".into()));
    };
    let shape = [m.count, m.channels, m.height, m.width].map(|d| i64::try_from(d).unwrap_or(i64::MAX));
    let images = Tensor::from_slice(&bytes).view(shape);
    let total = m.count as u64;
    let done = &mut |k: i64| reporter.progress(k.unsigned_abs(), total, what);
    match &net.net {
        Net::Inception(net, _) => {
            if m.channels == 1 {
                reporter.log(&format!("{what}: 1 channel, repeated to RGB as pytorch-fid does"));
            }
            Ok((net.features_batched(&images, batch, done).map_err(|e| input(e.to_string()))?, None))
        }
        Net::Detector(detector) => {
            if m.channels == 1 {
                reporter.log(&format!("{what}: 1 channel, repeated to RGB as EDM's fid.py does"));
            }
            Ok((detector.features_batched(&images, batch, done).map_err(input)?, None))
        }
        Net::Classifier(clf) => {
            clf.check_input([shape[1], shape[2], shape[3]]).map_err(|e| input(e.to_string()))?;
            let x = images.to_device(clf.device()).to_kind(tch::Kind::Float) / 127.5 - 1.0;
            let labelled = m.classes.len() > 1 && i64::try_from(m.classes.len()).ok() == Some(clf.config.classes);
            let accuracy = labelled.then(|| {
                let truth = Tensor::from_slice(&labels).to_device(clf.device());
                let right = clf.predict(&x, batch).eq_tensor(&truth).to_kind(tch::Kind::Double);
                right.mean(tch::Kind::Double).double_value(&[])
            });
            Ok((clf.features(&x, batch).to_device(Device::Cpu), accuracy))
        }
    }
}

/// Loads pytorch-fid's weights from a `torch.save` file or a safetensors file.
fn load_weights(vs: &VarStore, path: &Path) -> Result<(), StageError> {
    let bad = |message: String| StageError::Input { path: path.to_path_buf(), message };
    msnr::cache::check_stored_file(path).map_err(|e| bad(e.to_string()))?;
    let tensors: HashMap<String, Tensor> = if path.extension().is_some_and(|e| e == "safetensors") {
        Tensor::read_safetensors(path).map_err(|e| bad(e.to_string()))?.into_iter().collect()
    } else {
        let ckpt = torchfile::load(path).map_err(|e| bad(e.to_string()))?;
        ckpt.into_tensors(None).into_iter().map(|(name, t)| (name, to_tch(&t))).collect()
    };
    load_inception(vs, tensors, path).map_err(|e| bad(e.to_string()))
}

/// A checkpoint tensor as float32 (the network's kind; counters come out as floats and are
/// dropped by [`load_inception`]).
fn to_tch(t: &torchfile::Tensor) -> Tensor {
    let shape: Vec<i64> = t.shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
    Tensor::from_slice(&t.to_f32()).view(shape.as_slice())
}

/// `path` itself, or the one file in folder `path` with one of `extensions`.
pub(crate) fn single_file(path: &Path, extensions: &[&str]) -> Result<PathBuf, StageError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|e| StageError::io(path, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(StageError::Input {
            path: path.to_path_buf(),
            message: format!(
                "expected a dataset or one file ending in .{} here, found {n} such files",
                extensions.join(" or .")
            ),
        }),
    }
}

fn write_outputs(
    spec: &StageSpec,
    stats: &Statistics,
    metrics: &BTreeMap<String, f64>,
    features: &str,
) -> Result<(), StageError> {
    write_statistics(stats, &spec.out_dir.join("stats.npz")).map_err(metric)?;
    let mut json = serde_json::to_value(metrics).unwrap_or_default();
    json["features"] = serde_json::Value::from(features);
    let path = spec.out_dir.join("metrics.json");
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|e| StageError::io(path, e))
}

#[allow(clippy::cast_precision_loss)] // image counts are far below 2^52
fn count(features: &Tensor) -> f64 {
    features.size()[0] as f64
}

#[allow(clippy::needless_pass_by_value)] // the shape `map_err` wants
fn metric(e: crate::metrics::MetricError) -> StageError {
    StageError::Failed(e.to_string())
}
