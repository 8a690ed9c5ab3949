//! The `classifier` stage: trains a [`LeNet`] on a labelled dataset with Adam, holding out
//! a seeded share of the items to report test accuracy, and writes `classifier.safetensors`
//! and `config.json`. [`Classifier`] loads the artifact again and gives the features that
//! `fid`'s classifier distance uses and the predictions that score class-conditional samples.

pub mod net;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

pub use self::net::{LeNet, FEATURES};
use super::train::data::TrainData;
use msnr::stages::classifier::ClassifierParams;
use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

/// What `config.json` records: the inputs the classifier takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Image channels.
    pub channels: i64,
    /// Image height.
    pub height: i64,
    /// Image width.
    pub width: i64,
    /// Number of classes.
    pub classes: i64,
    /// Width of the feature layer.
    pub features: i64,
}

/// A trained classifier, loaded for scoring.
pub struct Classifier {
    /// What it takes.
    pub config: ClassifierConfig,
    net: LeNet,
    vs: VarStore,
}

/// Runs the stage.
///
/// # Errors
/// Unreadable data, a dataset without two classes or too small for the holdout.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let p: ClassifierParams = spec.typed()?;
    let device = if spec.device == "cuda" { Device::Cuda(0) } else { Device::Cpu };
    let data = TrainData::load(&spec.source_dir(&p.data)?, device)?;
    if data.num_classes < 2 {
        return Err(StageError::param("data", "a classifier needs a labelled dataset with at least two classes"));
    }
    let holdout = i64::try_from(p.holdout).unwrap_or(i64::MAX);
    if holdout >= data.len() {
        let n = data.len();
        return Err(StageError::param(
            "holdout",
            format!("{holdout} held-out items leave none of the {n} to train on"),
        ));
    }
    tch::manual_seed(i64::from_ne_bytes(p.seed.to_ne_bytes()));
    let order = Tensor::randperm(data.len(), (Kind::Int64, device));
    let (test, train) = (order.narrow(0, 0, holdout), order.narrow(0, holdout, data.len() - holdout));
    let [channels, height, width] = data.shape;
    let config = ClassifierConfig { channels, height, width, classes: data.num_classes, features: FEATURES };
    let vs = VarStore::new(device);
    let net = LeNet::new(&vs.root(), channels, data.num_classes);
    let loss = fit(&net, &vs, &data, &train, &p, reporter)?;
    let accuracy = accuracy(&net, &data, &test);
    reporter.log(&format!("test accuracy {accuracy:.4} on {holdout} held-out items, final loss {loss:.4}"));
    write(&spec.out_dir, &vs, &config)?;
    let metrics = BTreeMap::from([("accuracy".to_owned(), accuracy), ("loss".to_owned(), loss)]);
    Ok(StageResult { metrics, pins: BTreeMap::new() })
}

/// Adam on cross-entropy over seeded batches of `train`, the learning rate on a cosine
/// decay to 0 (Loshchilov & Hutter 2017, without restarts); returns the last loss.
fn fit(
    net: &LeNet,
    vs: &VarStore,
    data: &TrainData,
    train: &Tensor,
    p: &ClassifierParams,
    reporter: &dyn Reporter,
) -> Result<f64, StageError> {
    let mut opt = nn::Adam::default().build(vs, p.lr).map_err(|e| StageError::Failed(e.to_string()))?;
    let batch = i64::try_from(p.batch).unwrap_or(i64::MAX).min(train.size()[0]);
    let mut last = f64::NAN;
    for step in 1..=p.steps {
        opt.set_lr(cosine_lr(p.lr, step - 1, p.steps));
        let pick = Tensor::randint(train.size()[0], [batch], (Kind::Int64, train.device()));
        let idx = train.index_select(0, &pick);
        let images = shifted(&data.batch(&idx));
        let loss = net.logits_t(&images, true).cross_entropy_for_logits(&data.labels.index_select(0, &idx));
        opt.backward_step(&loss);
        if step % 50 == 0 || step == p.steps {
            last = loss.double_value(&[]);
            if !last.is_finite() {
                return Err(StageError::Failed(format!("the classifier's loss is {last} at step {step}; lower `lr`")));
            }
            reporter.progress(step, p.steps, &format!("loss {last:.4}"));
        }
    }
    Ok(last)
}

/// The learning rate of step `done` (0-based) of `steps`: `lr (1 + cos(pi done / steps)) / 2`.
#[allow(clippy::cast_precision_loss)]
fn cosine_lr(lr: f64, done: u64, steps: u64) -> f64 {
    lr * 0.5 * (1.0 + (std::f64::consts::PI * done as f64 / steps as f64).cos())
}

/// Each image moved by its own random offset of up to [`max_shift`] pixels in each
/// direction, the uncovered border filled with the background (-1): the classic
/// augmentation that lets a small CNN reach ~99% on MNIST from a few thousand digits.
fn shifted(x: &Tensor) -> Tensor {
    let [count, channels, height, width] = x.size()[..] else { unreachable!("images are [n, c, h, w]") };
    let pad = max_shift(height.min(width));
    let padded = (x + 1.0).constant_pad_nd([pad, pad, pad, pad]) - 1.0;
    let offsets = |side: i64| {
        let start = Tensor::randint(2 * pad + 1, [count, 1], (Kind::Int64, x.device()));
        start + Tensor::arange(side, (Kind::Int64, x.device())).unsqueeze(0)
    };
    let rows = offsets(height).view([count, 1, height, 1]).expand([count, channels, height, width + 2 * pad], false);
    let cols = offsets(width).view([count, 1, 1, width]).expand([count, channels, height, width], false);
    padded.gather(2, &rows, false).gather(3, &cols, false)
}

/// The largest training shift for images of side `side`: one pixel per 14 (2 on MNIST's
/// 28, 1 on its 14x14 downsampling), at least 1.
fn max_shift(side: i64) -> i64 {
    ((side + 7) / 14).max(1)
}

/// The share of `idx`'s items whose predicted class is their label.
fn accuracy(net: &LeNet, data: &TrainData, idx: &Tensor) -> f64 {
    tch::no_grad(|| {
        let predicted = net.logits(&data.batch(idx)).argmax(1, false);
        let right = predicted.eq_tensor(&data.labels.index_select(0, idx)).to_kind(Kind::Double);
        right.mean(Kind::Double).double_value(&[])
    })
}

fn write(out: &Path, vs: &VarStore, config: &ClassifierConfig) -> Result<(), StageError> {
    let weights = out.join("classifier.safetensors");
    vs.save(&weights).map_err(|e| StageError::Failed(format!("writing {}: {e}", weights.display())))?;
    let text = serde_json::to_string_pretty(config).expect("config serializes");
    std::fs::write(out.join("config.json"), text).map_err(|e| StageError::io(out.join("config.json"), e))
}

impl Classifier {
    /// Loads a `classifier` stage's output folder onto `device`.
    ///
    /// # Errors
    /// A missing, unreadable or (in the store) corrupted `config.json` or weights file, named.
    pub fn load(dir: &Path, device: Device) -> Result<Self, StageError> {
        let path = dir.join("config.json");
        let weights = dir.join("classifier.safetensors");
        for file in [&path, &weights] {
            msnr::cache::check_stored_file(file)
                .map_err(|e| StageError::Input { path: file.clone(), message: e.to_string() })?;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
        let config: ClassifierConfig = serde_json::from_str(&text)
            .map_err(|e| StageError::Input { path: path.clone(), message: format!("not a classifier config: {e}") })?;
        let mut vs = VarStore::new(device);
        let net = LeNet::new(&vs.root(), config.channels, config.classes);
        vs.load(&weights).map_err(|e| StageError::Input { path: weights, message: e.to_string() })?;
        Ok(Self { config, net, vs })
    }

    /// The device the classifier lives on.
    #[must_use]
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Checks that images of shape `[c, h, w]` are what the classifier was trained on.
    ///
    /// # Errors
    /// A message naming both shapes.
    pub fn check_input(&self, shape: [i64; 3]) -> Result<(), StageError> {
        let c = &self.config;
        if shape == [c.channels, c.height, c.width] {
            Ok(())
        } else {
            let [sc, sh, sw] = shape;
            Err(StageError::Failed(format!(
                "the classifier takes {}x{}x{} images, these are {sc}x{sh}x{sw}",
                c.channels, c.height, c.width
            )))
        }
    }

    /// The features of `images` (float in [-1, 1], `[n, c, h, w]`), in batches of `batch`, as f64.
    pub fn features(&self, images: &Tensor, batch: i64) -> Tensor {
        map_batches(images, batch, |x| self.net.features(x))
    }

    /// The predicted class of each image.
    pub fn predict(&self, images: &Tensor, batch: i64) -> Tensor {
        map_batches(images, batch, |x| self.net.logits(x).argmax(1, false))
    }
}

/// `f` over `images` in chunks of `batch`, without gradients; float results as f64.
fn map_batches(images: &Tensor, batch: i64, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    tch::no_grad(|| {
        let parts: Vec<Tensor> = images.split(batch.max(1), 0).iter().map(&f).collect();
        let out = Tensor::cat(&parts, 0);
        if out.is_floating_point() {
            out.to_kind(Kind::Double)
        } else {
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use msnr::lang::Value;
    use msnr::stages::images::run_mnist;
    use msnr::stages::spec::Silent;

    use super::*;

    fn digits(dir: &Path, count: i64) -> std::path::PathBuf {
        let out = dir.join("digits");
        let params = BTreeMap::from([("count".to_owned(), Value::Int(count))]);
        run_mnist(&StageSpec::standalone("mnist", params, &out, &out), &Silent).unwrap();
        out
    }

    fn spec(dir: &Path, data: &Path, steps: i64, holdout: i64) -> StageSpec {
        let params = BTreeMap::from([
            ("data".to_owned(), Value::Path(data.to_owned())),
            ("steps".to_owned(), Value::Int(steps)),
            ("holdout".to_owned(), Value::Int(holdout)),
        ]);
        let out = dir.join("clf");
        std::fs::create_dir_all(&out).unwrap();
        StageSpec::standalone("classifier", params, &out, &out)
    }

    #[test]
    fn learns_digits_and_scores_them_again_from_its_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let data = digits(dir.path(), 1200);
        let result = run(&spec(dir.path(), &data, 300, 200), &Silent).unwrap();
        let accuracy = result.metrics["accuracy"];
        assert!(accuracy > 0.9, "held-out accuracy {accuracy}");
        let clf = Classifier::load(&dir.path().join("clf"), Device::Cpu).unwrap();
        assert_eq!(clf.config, ClassifierConfig { channels: 1, height: 28, width: 28, classes: 10, features: 128 });
        let all = TrainData::load(&data, Device::Cpu).unwrap();
        let idx = Tensor::arange(300, (Kind::Int64, Device::Cpu));
        let images = all.batch(&idx);
        assert_eq!(clf.features(&images, 64).size(), [300, 128]);
        let right = clf.predict(&images, 64).eq_tensor(&all.labels.narrow(0, 0, 300)).sum(Kind::Int64);
        assert!(right.int64_value(&[]) > 250, "{right}");
        assert!(clf
            .check_input([3, 28, 28])
            .unwrap_err()
            .to_string()
            .contains("takes 1x28x28 images, these are 3x28x28"));
    }

    #[test]
    fn the_learning_rate_decays_on_a_half_cosine_to_zero() {
        assert!((cosine_lr(1e-3, 0, 100) - 1e-3).abs() < 1e-15);
        assert!((cosine_lr(1e-3, 50, 100) - 5e-4).abs() < 1e-15);
        assert!(cosine_lr(1e-3, 99, 100) < 1e-6);
    }

    #[test]
    fn each_image_moves_by_its_own_offset_within_the_limit() {
        tch::manual_seed(3);
        let (n, side) = (64, 14);
        let x = Tensor::full([n, 1, side, side], -1.0, (Kind::Float, Device::Cpu));
        let _ = x.narrow(2, 7, 1).narrow(3, 6, 1).fill_(1.0);
        let out = shifted(&x);
        assert_eq!(out.size(), [n, 1, side, side]);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..n {
            let img = out.get(i).get(0);
            assert_eq!(img.eq(1.0).sum(Kind::Int64).int64_value(&[]), 1, "the dot is kept whole");
            assert_eq!(img.eq(-1.0).sum(Kind::Int64).int64_value(&[]), side * side - 1, "background elsewhere");
            let at = img.argmax(None, false).int64_value(&[]);
            let (dy, dx) = (at / side - 7, at % side - 6);
            assert!(dy.abs() <= max_shift(side) && dx.abs() <= max_shift(side), "offset ({dy}, {dx})");
            seen.insert((dy, dx));
        }
        assert!(seen.len() >= 7, "per-image offsets, not one per batch: {seen:?}");
        assert_eq!((max_shift(14), max_shift(28), max_shift(4), max_shift(64)), (1, 2, 1, 5));
    }

    #[test]
    fn refuses_a_holdout_that_leaves_nothing_to_train_on() {
        let dir = tempfile::tempdir().unwrap();
        let data = digits(dir.path(), 50);
        let err = run(&spec(dir.path(), &data, 1, 50), &Silent).err().unwrap().to_string();
        assert!(err.contains("parameter `holdout`: 50 held-out items leave none of the 50"), "{err}");
    }
}
