//! Drawing images `[start, end)` so that image `i` depends only on `(seed, i)`: its initial
//! noise, its label and its per-step noise come from generators keyed by `(seed, i)`
//! ([`ImageNoise`]), so raising the count reuses the first images bit for bit (on the CPU)
//! and the batch size changes nothing. Images come out as `u8`, the way torchvision's
//! `save_image(normalize=True, value_range=(-1, 1))` writes them (the seed's output).

use std::ops::Range;

use tch::{Device, Kind, Tensor};

use super::noise::{key, ImageNoise, SplitMix64};
use super::{GuidedModel, Sampler, SamplerError};

/// The generator stream of an image's label (streams 0, 1, ... are its noise).
const LABEL_STREAM: u64 = u64::MAX;

/// Where class labels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labels {
    /// No labels: an unconditional model.
    None,
    /// Uniform in `0 .. classes`, from image `i`'s own generator.
    Uniform(i64),
    /// Image `i` gets `list[i % list.len()]`.
    Given(Vec<i64>),
}

impl Labels {
    /// Labels for a model with `classes` classes (0 or less: unconditional): `given` when not
    /// empty, else uniform.
    ///
    /// # Errors
    /// [`SamplerError::Label`] when a given label is outside `0 .. classes`.
    pub fn new(classes: i64, given: Vec<i64>) -> Result<Self, SamplerError> {
        if classes <= 0 {
            return Ok(Self::None);
        }
        if let Some((position, &label)) = given.iter().enumerate().find(|(_, l)| !(0..classes).contains(*l)) {
            return Err(SamplerError::Label { position, label, classes });
        }
        Ok(if given.is_empty() { Self::Uniform(classes) } else { Self::Given(given) })
    }

    /// Image `i`'s label under `seed`.
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
    pub fn label(&self, seed: u64, i: u64) -> Option<i64> {
        match self {
            Self::None => None,
            // `n > 0` (from `new`), so the draw is below `n <= i64::MAX`.
            Self::Uniform(n) => Some(SplitMix64::new(key(seed, i, LABEL_STREAM)).below(*n as u64) as i64),
            // The remainder is below `list.len()`, a `usize`.
            Self::Given(list) => Some(list[(i % list.len() as u64) as usize]),
        }
    }
}

/// How images are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawConfig {
    /// The run's seed.
    pub seed: u64,
    /// Images per sampler call (the model sees twice as many where guidance is on).
    pub batch: usize,
    /// One image's shape `[C, H, W]`.
    pub shape: [i64; 3],
    /// Where the sampler runs.
    pub device: Device,
    /// The sampler state's dtype (the seed keeps it in float64; the net runs in its own).
    pub kind: Kind,
}

/// One batch of drawn images.
#[derive(Debug)]
pub struct Drawn {
    /// The index of the first image.
    pub start: u64,
    /// `u8` images `[B, C, H, W]` on the CPU.
    pub images: Tensor,
    /// Their labels (empty for an unconditional model).
    pub labels: Vec<i64>,
}

/// Draws images `range` in batches of `cfg.batch`, handing each batch to `each` (so memory
/// is bounded by the batch), stopping at its first error.
///
/// # Errors
/// The first error `each` returns.
pub fn draw<E>(
    sampler: &dyn Sampler,
    model: &GuidedModel,
    labels: &Labels,
    cfg: &DrawConfig,
    range: Range<u64>,
    each: impl FnMut(Drawn) -> Result<(), E>,
) -> Result<(), E> {
    draw_decoded(sampler, model, labels, cfg, range, &Tensor::shallow_clone, each)
}

/// As [`draw`], with each batch of samples passed through `decode` (a latent model's
/// VAE decoder: latents to images in `[-1, 1]`) before they become `u8`.
///
/// # Errors
/// The first error `each` returns.
pub fn draw_decoded<E>(
    sampler: &dyn Sampler,
    model: &GuidedModel,
    labels: &Labels,
    cfg: &DrawConfig,
    range: Range<u64>,
    decode: &dyn Fn(&Tensor) -> Tensor,
    mut each: impl FnMut(Drawn) -> Result<(), E>,
) -> Result<(), E> {
    let batch = u64::try_from(cfg.batch.max(1)).unwrap_or(u64::MAX);
    let mut start = range.start;
    while start < range.end {
        let ids = start..(start + batch).min(range.end);
        each(draw_batch(sampler, model, labels, cfg, ids, decode))?;
        start += batch;
    }
    Ok(())
}

/// Images `ids`, each from its own generators.
fn draw_batch(
    sampler: &dyn Sampler,
    model: &GuidedModel,
    labels: &Labels,
    cfg: &DrawConfig,
    ids: Range<u64>,
    decode: &dyn Fn(&Tensor) -> Tensor,
) -> Drawn {
    let mut noise = ImageNoise { seed: cfg.seed, ids: ids.clone() };
    let z = noise.initial(&cfg.shape).to_kind(cfg.kind).to_device(cfg.device);
    let ys: Vec<i64> = ids.clone().filter_map(|i| labels.label(cfg.seed, i)).collect();
    let y = (!ys.is_empty()).then(|| Tensor::from_slice(&ys).to_device(cfg.device));
    let x = tch::no_grad(|| decode(&sampler.sample(model, &z, y.as_ref(), &mut noise)));
    Drawn { start: ids.start, images: to_u8(&x).to_device(Device::Cpu), labels: ys }
}

/// Samples in `[-1, 1]` as `u8`, as torchvision's `save_image(..., normalize=True,
/// value_range=(-1, 1))`: `norm_ip` clamps to the range and maps it to `[0, 1]`
/// (`(x - low) / (high - low)`), then `mul(255).add_(0.5).clamp_(0, 255)` and a truncating
/// cast to `uint8` (torchvision utils.py `make_grid`/`save_image`). In `x`'s dtype.
pub fn to_u8(x: &Tensor) -> Tensor {
    ((x.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0 + 0.5).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_as_torchvision_save_image() {
        let x = Tensor::from_slice(&[-2.0f64, -1.0, -0.5, 0.0, 0.001_960_784_313_725_49, 0.5, 1.0, 3.0]);
        let got: Vec<u8> = Vec::try_from(to_u8(&x)).unwrap();
        // (x + 1) / 2 * 255 + 0.5, truncated: 0, 0, 64.25, 128, 128.25, 191.75, 255, 255
        assert_eq!(got, [0, 0, 64, 128, 128, 191, 255, 255]);
    }

    #[test]
    fn labels_are_uniform_or_given_and_checked() {
        let uniform = Labels::new(10, vec![]).unwrap();
        let drawn: Vec<i64> = (0..2000).map(|i| uniform.label(9, i).unwrap()).collect();
        assert!(drawn.iter().all(|l| (0..10).contains(l)));
        assert!((0..10).all(|c| drawn.iter().filter(|l| **l == c).count() > 150), "every class drawn");
        assert_eq!(uniform.label(9, 17), uniform.label(9, 17));
        let given = Labels::new(10, vec![4, 2]).unwrap();
        assert_eq!((given.label(0, 0), given.label(0, 3)), (Some(4), Some(2)));
        assert_eq!(Labels::new(0, vec![]).unwrap().label(0, 0), None);
        assert_eq!(
            Labels::new(10, vec![1, 10]).unwrap_err().to_string(),
            "sampler parameter `labels`: label 10 at position 1 is outside 0..10"
        );
    }
}
