//! `AdamW` (Loshchilov & Hutter 2019) over the flat parameter buffer, step for step the
//! arithmetic of `torch.optim.AdamW` (its single-tensor path, `_single_tensor_adam` with
//! decoupled weight decay): `p *= 1 - lr * wd`; `m = lerp(m, g, 1 - b1)`;
//! `v = b2 * v + (1 - b2) * g^2`; `p -= lr / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)`.
//! With a linear learning-rate warmup: `lr_k = lr * min(1, k / warmup)` at step `k = 1, 2, ...`
//! (`LambdaLR(lambda s: min(1, (s + 1) / warmup))`), so the first step already moves.
//!
//! The whole update is ten kernels over the flat buffers whatever the number of tensors, into
//! preallocated scratch buffers. `addcmul`/`addcdiv` with a `value` are not bound by tch, so
//! `value * t1` is formed first, which rounds exactly as `ATen`'s `value * t1 * t2` on CPU.

use std::path::Path;

use tch::Tensor;

use super::flat::{read_state, step_tensor, step_value, write_state, FlatError, FlatParams};

/// `AdamW` hyperparameters; `Default` is `PyTorch`'s (`lr = 1e-3`, betas `(0.9, 0.999)`,
/// `eps = 1e-8`, `weight_decay = 1e-2`) without warmup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator, outside the square root.
    pub eps: f64,
    /// Decoupled weight decay (`p *= 1 - lr * weight_decay`).
    pub weight_decay: f64,
    /// Steps of linear learning-rate warmup (0: none).
    pub warmup: u64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 1e-2, warmup: 0 }
    }
}

/// `AdamW` state over one [`FlatParams`]: flat first and second moments and the step count,
/// plus two scratch buffers so a step allocates nothing.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
    scratch: Tensor,
    denom: Tensor,
}

impl AdamW {
    /// Fresh state (zero moments, step 0) shaped like `params`.
    #[must_use]
    pub fn new(params: &FlatParams, config: AdamWConfig) -> Self {
        let zeros = || params.data().zeros_like();
        Self { config, exp_avg: zeros(), exp_avg_sq: zeros(), step: 0, scratch: zeros(), denom: zeros() }
    }

    /// The hyperparameters.
    #[must_use]
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Steps taken so far.
    #[must_use]
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The learning rate of step `k` (1-based) after warmup: `lr * min(1, k / warmup)`.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // step counts stay far below 2^52
    pub fn lr_at(&self, k: u64) -> f64 {
        match self.config.warmup {
            0 => self.config.lr,
            w => self.config.lr * (k as f64 / w as f64).min(1.0),
        }
    }

    /// One update of `params` from their flat gradient with the warmup learning rate;
    /// returns the learning rate used.
    pub fn step(&mut self, params: &FlatParams) -> f64 {
        let lr = self.lr_at(self.step + 1);
        self.step_with_lr(params, lr);
        lr
    }

    /// One update with an explicit learning rate (for schedules beyond warmup).
    #[allow(clippy::cast_precision_loss)] // step counts stay far below 2^52
    pub fn step_with_lr(&mut self, params: &FlatParams, lr: f64) {
        self.step += 1;
        let AdamWConfig { betas: (beta1, beta2), eps, weight_decay, .. } = self.config;
        let k = self.step as f64;
        let step_size = lr / (1.0 - beta1.powf(k));
        let bias_correction2_sqrt = (1.0 - beta2.powf(k)).sqrt();
        let (mut p, g) = (params.data().shallow_clone(), params.grad());
        tch::no_grad(|| {
            let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
            let _ = self.exp_avg.lerp_(g, 1.0 - beta1);
            let _ = self.exp_avg_sq.g_mul_scalar_(beta2);
            let _ = self.exp_avg_sq.addcmul_(&g.mul_scalar_out(&self.scratch, 1.0 - beta2), g);
            let _ = self.exp_avg_sq.sqrt_out(&self.denom);
            let _ = self.denom.g_div_scalar_(bias_correction2_sqrt);
            let _ = self.denom.g_add_scalar_(eps);
            let _ = p.addcdiv_(&self.exp_avg.mul_scalar_out(&self.scratch, -step_size), &self.denom);
        });
    }

    /// The first and second moment buffers (flat, laid out like the parameters).
    pub fn moments(&self) -> (&Tensor, &Tensor) {
        (&self.exp_avg, &self.exp_avg_sq)
    }

    /// Writes the moments and the step count to a safetensors file.
    ///
    /// # Errors
    /// [`FlatError::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), FlatError> {
        write_state(
            path,
            &[
                ("adamw.exp_avg", self.exp_avg.shallow_clone()),
                ("adamw.exp_avg_sq", self.exp_avg_sq.shallow_clone()),
                ("adamw.step", step_tensor(self.step)),
            ],
        )
    }

    /// Restores moments and step count saved by [`Self::save`] for the same parameter layout.
    ///
    /// # Errors
    /// When the file cannot be read, lacks a tensor, or was saved for another parameter count.
    pub fn load(&mut self, path: &Path) -> Result<(), FlatError> {
        let n = i64::try_from(self.exp_avg.numel()).ok();
        let wanted = [("adamw.exp_avg", n), ("adamw.exp_avg_sq", n), ("adamw.step", Some(1))];
        let [m, v, step] = read_state(path, wanted, self.exp_avg.device())?;
        tch::no_grad(|| {
            self.exp_avg.copy_(&m);
            self.exp_avg_sq.copy_(&v);
        });
        self.step = step_value(&step);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    use super::*;

    fn one_param(value: f32) -> (VarStore, FlatParams) {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var_copy("p", &Tensor::from_slice(&[value]));
        let flat = FlatParams::new(&vs).unwrap();
        (vs, flat)
    }

    fn set_grad(flat: &FlatParams, g: f32) {
        tch::no_grad(|| {
            let _ = flat.grad().shallow_clone().fill_(f64::from(g));
        });
    }

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        // With bias correction, step 1 is p -= lr * g / (|g| + eps) (before weight decay).
        let (_vs, flat) = one_param(1.0);
        let mut opt = AdamW::new(&flat, AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() });
        set_grad(&flat, 0.3);
        assert_eq!(opt.step(&flat), 1e-3);
        let p = flat.data().double_value(&[0]);
        assert!((p - (1.0 - 1e-3 * 0.3 / (0.3 + 1e-8))).abs() < 1e-7, "{p}");
    }

    #[test]
    fn warmup_ramps_linearly() {
        let (_vs, flat) = one_param(0.0);
        let opt = AdamW::new(&flat, AdamWConfig { lr: 1.0, warmup: 4, ..AdamWConfig::default() });
        assert_eq!([1, 2, 4, 9].map(|k| opt.lr_at(k)), [0.25, 0.5, 1.0, 1.0]);
    }

    #[test]
    fn weight_decay_alone_shrinks_parameters() {
        let (_vs, flat) = one_param(2.0);
        let mut opt = AdamW::new(&flat, AdamWConfig { lr: 0.1, weight_decay: 0.5, ..AdamWConfig::default() });
        set_grad(&flat, 0.0);
        let _ = opt.step(&flat);
        assert!((flat.data().double_value(&[0]) - 2.0 * 0.95).abs() < 1e-6);
    }

    #[test]
    fn state_round_trips_through_a_file() {
        let (_vs, flat) = one_param(1.0);
        let mut opt = AdamW::new(&flat, AdamWConfig::default());
        set_grad(&flat, 0.5);
        let _ = opt.step(&flat);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adamw.safetensors");
        opt.save(&path).unwrap();
        let mut back = AdamW::new(&flat, AdamWConfig::default());
        back.load(&path).unwrap();
        assert_eq!(back.step_count(), 1);
        assert!(back.moments().1.equal(opt.moments().1));
        let (_vs2, other) = {
            let vs = VarStore::new(Device::Cpu);
            let _ = vs.root().zeros("q", &[3]);
            let f = FlatParams::new(&vs).unwrap();
            (vs, f)
        };
        let err = AdamW::new(&other, AdamWConfig::default()).load(&path).unwrap_err().to_string();
        assert!(err.ends_with("tensor `adamw.exp_avg` has 1 elements, the model has 3"), "{err}");
        assert_eq!(opt.moments().0.kind(), Kind::Float);
    }
}
