//! An exponential moving average of the parameters, kept as one flat buffer:
//! `shadow -= (1 - d) * (shadow - p)` (diffusers `EMAModel.step`; guided-diffusion
//! `update_ema`), one kernel per update.
//!
//! Decay: constant `d = decay` without warmup (guided-diffusion, the seed repo); with warmup,
//! diffusers' `EMAModel.get_decay` default: at update `k = 1, 2, ...`, `s = k - 1`,
//! `d = 0` when `s = 0` (the first update copies the parameters) and otherwise
//! `d = min(decay, (1 + s) / (10 + s))`.

use std::path::Path;

use tch::Tensor;

use super::flat::{read_state, step_tensor, step_value, write_state, FlatError, FlatParams};

/// An EMA of a [`FlatParams`]'s parameters.
#[derive(Debug)]
pub struct Ema {
    shadow: Tensor,
    decay: f64,
    warmup: bool,
    step: u64,
}

impl Ema {
    /// An average starting at the parameters' current values.
    #[must_use]
    pub fn new(params: &FlatParams, decay: f64, warmup: bool) -> Self {
        Self { shadow: params.data().detach().copy(), decay, warmup, step: 0 }
    }

    /// The decay used at update `k` (1-based).
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // step counts stay far below 2^52
    pub fn decay_at(&self, k: u64) -> f64 {
        if !self.warmup {
            return self.decay;
        }
        let s = k.saturating_sub(1) as f64;
        if s == 0.0 {
            0.0
        } else {
            self.decay.min((1.0 + s) / (10.0 + s))
        }
    }

    /// Folds the current parameters into the average; returns the decay used.
    pub fn update(&mut self, params: &FlatParams) -> f64 {
        self.step += 1;
        let decay = self.decay_at(self.step);
        tch::no_grad(|| {
            let _ = self.shadow.lerp_(params.data(), 1.0 - decay);
        });
        decay
    }

    /// Updates taken so far.
    #[must_use]
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The averaged parameters, flat (see [`FlatParams::named_views`] to name them).
    pub fn shadow(&self) -> &Tensor {
        &self.shadow
    }

    /// Overwrites the model's parameters with the average (for sampling or export).
    pub fn copy_to(&self, params: &FlatParams) {
        tch::no_grad(|| params.data().shallow_clone().copy_(&self.shadow));
    }

    /// Writes the average and the update count to a safetensors file.
    ///
    /// # Errors
    /// [`FlatError::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), FlatError> {
        write_state(path, &[("ema.shadow", self.shadow.shallow_clone()), ("ema.step", step_tensor(self.step))])
    }

    /// Restores an average saved by [`Self::save`] for the same parameter layout.
    ///
    /// # Errors
    /// When the file cannot be read, lacks a tensor, or was saved for another parameter count.
    pub fn load(&mut self, path: &Path) -> Result<(), FlatError> {
        let n = i64::try_from(self.shadow.numel()).ok();
        let [shadow, step] = read_state(path, [("ema.shadow", n), ("ema.step", Some(1))], self.shadow.device())?;
        tch::no_grad(|| self.shadow.copy_(&shadow));
        self.step = step_value(&step);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use tch::nn::VarStore;
    use tch::Device;

    use super::*;

    fn params(value: f32) -> (VarStore, FlatParams) {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var_copy("p", &Tensor::from_slice(&[value, value]));
        let flat = FlatParams::new(&vs).unwrap();
        (vs, flat)
    }

    fn set(flat: &FlatParams, value: f64) {
        tch::no_grad(|| {
            let _ = flat.data().shallow_clone().fill_(value);
        });
    }

    #[test]
    fn constant_decay_averages() {
        let (_vs, flat) = params(0.0);
        let mut ema = Ema::new(&flat, 0.9, false);
        set(&flat, 1.0);
        assert_eq!(ema.update(&flat), 0.9);
        assert!((ema.shadow().double_value(&[0]) - 0.1).abs() < 1e-7);
    }

    #[test]
    fn warmup_follows_diffusers() {
        let (_vs, flat) = params(0.0);
        let ema = Ema::new(&flat, 0.9999, true);
        assert_eq!(ema.decay_at(1), 0.0);
        assert_eq!(ema.decay_at(2), 2.0 / 11.0);
        assert_eq!(ema.decay_at(1_000_000), 0.9999);
    }

    #[test]
    fn copy_to_writes_the_average_into_the_model() {
        let (vs, flat) = params(3.0);
        let mut ema = Ema::new(&flat, 0.5, true);
        set(&flat, 5.0);
        let _ = ema.update(&flat);
        set(&flat, 1.0);
        ema.copy_to(&flat);
        assert_eq!(vs.variables()["p"].double_value(&[1]), 5.0, "first warmup update copies");
    }

    #[test]
    fn state_round_trips_through_a_file() {
        let (_vs, flat) = params(2.0);
        let mut ema = Ema::new(&flat, 0.9, false);
        let _ = ema.update(&flat);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ema.safetensors");
        ema.save(&path).unwrap();
        set(&flat, 7.0);
        let mut back = Ema::new(&flat, 0.9, false);
        back.load(&path).unwrap();
        assert_eq!((back.step_count(), back.shadow().double_value(&[0])), (1, 2.0));
        assert!(back
            .load(&dir.path().join("missing.safetensors"))
            .unwrap_err()
            .to_string()
            .contains("missing.safetensors"));
    }
}
