//! Noise for samplers: the per-step noise they ask for, either fixed tensors (parity tests)
//! or drawn per image from generators seeded by `(seed, image, stream)`, so that image `i`'s
//! noise does not depend on which batch it is in, on the device or on other threads.
//!
//! Generator: `SplitMix64` (Steele, Lea & Flood 2014) keyed by its finalizer over the seed,
//! the image index and the stream; normals by the Box-Muller transform (Box & Muller 1958),
//! both of each pair used, computed in `f64`.

use std::f64::consts::TAU;
use std::ops::Range;

use tch::Tensor;

/// The `SplitMix64` increment (the golden-ratio constant).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The source of the noise a sampler adds at its steps.
pub trait StepNoise {
    /// Step `k`'s standard normal noise, shaped, typed and placed like `like`.
    fn step(&mut self, k: usize, like: &Tensor) -> Tensor;
}

/// Given noise: `steps[k]` for step `k` (a tensor `[steps, B, C, H, W]`).
#[derive(Debug)]
pub struct FixedNoise(pub Tensor);

impl StepNoise for FixedNoise {
    fn step(&mut self, k: usize, like: &Tensor) -> Tensor {
        self.0.get(i64::try_from(k).expect("step fits i64")).to_kind(like.kind()).to_device(like.device())
    }
}

/// Noise for images `ids` (one row each), every image from its own generators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNoise {
    /// The run's seed.
    pub seed: u64,
    /// The images of the batch, in row order.
    pub ids: Range<u64>,
}

impl ImageNoise {
    /// Stream 0 of each image: its initial noise, `[B, shape...]` `f64` on the CPU.
    pub fn initial(&self, shape: &[i64]) -> Tensor {
        self.draw(0, shape)
    }

    /// Stream `stream` of every image, `[B, shape...]` `f64` on the CPU.
    fn draw(&self, stream: u64, shape: &[i64]) -> Tensor {
        let per_image = usize::try_from(shape.iter().product::<i64>()).expect("image sizes are positive");
        let mut values = Vec::with_capacity(per_image * self.ids.clone().count());
        for id in self.ids.clone() {
            let mut rng = SplitMix64::new(key(self.seed, id, stream));
            values.extend(rng.normals(per_image));
        }
        let rows = i64::try_from(self.ids.clone().count()).expect("batch fits i64");
        Tensor::from_slice(&values).reshape([&[rows][..], shape].concat())
    }
}

impl StepNoise for ImageNoise {
    /// Stream `k + 1` of each image.
    fn step(&mut self, k: usize, like: &Tensor) -> Tensor {
        let size = like.size();
        let stream = u64::try_from(k).expect("step fits u64") + 1;
        let noise = self.draw(stream, &size[1..]);
        noise.to_kind(like.kind()).to_device(like.device())
    }
}

/// The generator seed of `(seed, id, stream)`: `SplitMix64`'s finalizer applied twice.
#[must_use]
pub fn key(seed: u64, id: u64, stream: u64) -> u64 {
    mix(mix(seed, id), stream)
}

/// `SplitMix64`'s finalizer over `seed` and `k` (as the train stage keys its steps).
fn mix(seed: u64, k: u64) -> u64 {
    finalize(seed ^ k.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA))
}

/// `SplitMix64`'s output function (Stafford's "Mix13" constants).
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `SplitMix64` (Steele, Lea & Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        finalize(self.0)
    }

    /// A uniform `f64` in `(0, 1]` (53 random bits).
    #[allow(clippy::cast_precision_loss)] // 53 bits are exact
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n`, unbiased (Lemire 2019, multiply-shift with rejection).
    ///
    /// # Panics
    /// When `n` is 0.
    #[allow(clippy::cast_possible_truncation)] // the low 64 bits of the product are wanted
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "a range of integers needs at least one");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// `count` standard normals (Box-Muller: `sqrt(-2 ln u1) (cos, sin)(2 pi u2)`).
    pub fn normals(&mut self, count: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(count + 1);
        while out.len() < count {
            let (r, angle) = ((-2.0 * self.unit().ln()).sqrt(), TAU * self.unit());
            out.extend([r * angle.cos(), r * angle.sin()]);
        }
        out.truncate(count);
        out
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn normals_have_unit_moments() {
        let v = SplitMix64::new(7).normals(200_001);
        let n = 200_001.0;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "mean {mean}, var {var}");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn an_images_noise_does_not_depend_on_its_batch() {
        let alone = ImageNoise { seed: 3, ids: 5..6 }.initial(&[2, 3, 3]);
        let batch = ImageNoise { seed: 3, ids: 4..8 }.initial(&[2, 3, 3]);
        assert!(alone.get(0).equal(&batch.get(1)));
        assert!(!batch.get(0).equal(&batch.get(1)), "images differ");
        let like = Tensor::zeros([4, 2, 3, 3], (Kind::Double, Device::Cpu));
        let mut noise = ImageNoise { seed: 3, ids: 4..8 };
        assert!(!noise.step(0, &like).equal(&batch), "a step's stream is not the initial one");
        assert!(noise.step(2, &like).equal(&noise.step(2, &like)));
        assert!(!ImageNoise { seed: 4, ids: 5..6 }.initial(&[2, 3, 3]).equal(&alone), "the seed matters");
    }

    #[test]
    fn below_is_uniform_over_its_range() {
        let mut rng = SplitMix64::new(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[usize::try_from(rng.below(10)).unwrap()] += 1;
        }
        assert!(counts.iter().all(|c| (9_500..10_500).contains(c)), "{counts:?}");
    }
}
