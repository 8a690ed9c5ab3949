//! Uniform timestep sampling, `t ~ U{0, ..., T-1}` per sample (guided-diffusion's
//! `UniformSampler`), from a seeded generator of our own so that a run draws the same
//! timesteps on CPU and CUDA and resumes exactly from a checkpointed state (one `u64`).
//!
//! Generator: `SplitMix64` (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
//! generators"); range reduction: Lemire 2019, "Fast random integer generation in an
//! interval" (multiply-shift with rejection, unbiased).

use tch::{Device, Kind, Tensor};

/// The `SplitMix64` increment (the golden-ratio constant).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seeded sampler of uniform timesteps in `0 .. steps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestepSampler {
    steps: u64,
    state: u64,
}

impl TimestepSampler {
    /// A sampler over `0 .. steps` seeded with `seed`.
    ///
    /// # Panics
    /// When `steps` is 0 (a schedule always has at least one step).
    #[must_use]
    pub fn new(steps: usize, seed: u64) -> Self {
        assert!(steps > 0, "a timestep sampler needs at least one timestep");
        Self { steps: steps as u64, state: seed }
    }

    /// The generator state, to checkpoint; [`Self::with_state`] resumes from it.
    #[must_use]
    pub fn state(&self) -> u64 {
        self.state
    }

    /// This sampler continued from a checkpointed `state`.
    #[must_use]
    pub fn with_state(mut self, state: u64) -> Self {
        self.state = state;
        self
    }

    /// `n` timesteps as an `Int64` tensor of shape `[n]` on `device`. On CUDA the host buffer
    /// is pinned and copied without blocking the host (a blocking copy if pinning fails).
    pub fn sample(&mut self, n: usize, device: Device) -> Tensor {
        let values: Vec<i64> = (0..n).map(|_| self.next_timestep()).collect();
        let host = Tensor::from_slice(&values);
        match device {
            Device::Cpu => host,
            _ => match crate::shim::pin_memory(&host) {
                Ok(pinned) => pinned.to_device_(device, Kind::Int64, true, false),
                Err(_) => host.to_device(device),
            },
        }
    }

    /// One timestep, unbiased (Lemire's rejection on the 128-bit product).
    #[allow(clippy::cast_possible_truncation)] // the low 64 bits of the product are wanted
    fn next_timestep(&mut self) -> i64 {
        let threshold = self.steps.wrapping_neg() % self.steps;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(self.steps);
            if (product as u64) >= threshold {
                return i64::try_from(product >> 64).expect("a timestep is below steps, which fits in i64");
            }
        }
    }

    /// `SplitMix64`'s next output.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference C implementation (Vigna, splitmix64.c) seeded with 0.
        let mut s = TimestepSampler::new(1, 0);
        assert_eq!(s.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(s.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn samples_cover_the_range_uniformly() {
        let mut s = TimestepSampler::new(10, 42);
        let t: Vec<i64> = Vec::try_from(s.sample(100_000, Device::Cpu)).unwrap();
        let mut counts = [0u32; 10];
        for v in t {
            counts[usize::try_from(v).unwrap()] += 1;
        }
        // Chi-square with 9 degrees of freedom; 27.9 is its 0.999 quantile.
        let chi2: f64 = counts.iter().map(|&c| (f64::from(c) - 10_000.0).powi(2) / 10_000.0).sum();
        assert!(chi2 < 27.9, "counts {counts:?}, chi2 {chi2}");
    }

    #[test]
    fn resumes_exactly_from_its_state() {
        let mut a = TimestepSampler::new(1000, 7);
        let _ = a.sample(5, Device::Cpu);
        let mut b = TimestepSampler::new(1000, 0).with_state(a.state());
        assert!(a.sample(64, Device::Cpu).equal(&b.sample(64, Device::Cpu)));
    }
}
