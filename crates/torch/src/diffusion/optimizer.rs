//! `AdamW` (Loshchilov & Hutter 2019) over the flat parameter buffer, step for step the
//! arithmetic of `torch.optim.AdamW` (its single-tensor path, `_single_tensor_adam` with
//! decoupled weight decay): `p *= 1 - lr * wd`; `m = lerp(m, g, 1 - b1)`;
//! `v = b2 * v + (1 - b2) * g^2`; `p -= lr / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)`.
//! With a linear learning-rate warmup: `lr_k = lr * min(1, k / warmup)` at step `k = 1, 2, ...`
//! (`LambdaLR(lambda s: min(1, (s + 1) / warmup))`), so the first step already moves.
//!
//! Two kernels for the same update, chosen by device:
//! - CPU ([`Kernel::Reference`]): ten kernels over the flat buffers whatever the number of
//!   tensors, into preallocated scratch buffers, rounding exactly as `torch.optim.AdamW`'s
//!   single-tensor path (the tests compare bit for bit). `addcmul`/`addcdiv` with a `value` are
//!   not bound by tch, so `value * t1` is formed first, which rounds exactly as `ATen`'s
//!   `value * t1 * t2` on CPU.
//! - CUDA ([`Kernel::Fused`]): `ATen`'s fused kernel, the one `AdamW(fused=True)` runs (one
//!   launch, no scratch memory: about a third of the memory traffic of the ten kernels and
//!   two parameter-sized buffers less; see the shared GPU notes). Same formula; it rounds
//!   in a different order, so CUDA runs agree with CPU runs to float precision, not bits.

use std::path::Path;

use tch::Tensor;

use super::flat::{read_state, step_tensor, step_value, write_state, FlatError, FlatParams};
use crate::shim::{fused_adamw, FusedAdamW};

pub use msnr::diffusion::adamw::AdamWConfig;

/// `AdamW` state over one [`FlatParams`]: flat first and second moments and the step count,
/// plus what the update kernel needs so a step allocates nothing.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
    kernel: Kernel,
}

/// How an update is computed (see the module docs).
#[derive(Debug)]
enum Kernel {
    /// `torch.optim.AdamW`'s single-tensor arithmetic, with two scratch buffers.
    Reference { scratch: Tensor, denom: Tensor },
    /// `ATen`'s `_fused_adamw_`, with the step count as a float32 tensor on the device.
    Fused { step: Tensor },
}

impl AdamW {
    /// Fresh state (zero moments, step 0) shaped like `params`: the fused kernel on CUDA, the
    /// reference arithmetic elsewhere.
    #[must_use]
    pub fn new(params: &FlatParams, config: AdamWConfig) -> Self {
        let fused = params.data().device().is_cuda();
        Self::with_kernel(params, config, fused)
    }

    /// Like [`Self::new`] but with the fused kernel on any device (`ATen` has a CPU version too),
    /// to compare the two.
    #[must_use]
    pub fn fused(params: &FlatParams, config: AdamWConfig) -> Self {
        Self::with_kernel(params, config, true)
    }

    fn with_kernel(params: &FlatParams, config: AdamWConfig, fused: bool) -> Self {
        let zeros = || params.data().zeros_like();
        let kernel = if fused {
            Kernel::Fused { step: Tensor::zeros([], (tch::Kind::Float, params.data().device())) }
        } else {
            Kernel::Reference { scratch: zeros(), denom: zeros() }
        };
        Self { config, exp_avg: zeros(), exp_avg_sq: zeros(), step: 0, kernel }
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
    ///
    /// # Panics
    /// When libtorch rejects the fused kernel's arguments, which [`Self::new`] makes consistent.
    #[allow(clippy::cast_precision_loss)] // step counts stay far below 2^52
    pub fn step_with_lr(&mut self, params: &FlatParams, lr: f64) {
        self.step += 1;
        let AdamWConfig { betas: (beta1, beta2), eps, weight_decay, .. } = self.config;
        let k = self.step as f64;
        let (mut p, g) = (params.data().shallow_clone(), params.grad());
        tch::no_grad(|| match &mut self.kernel {
            Kernel::Fused { step } => {
                let _ = step.fill_(k);
                let h = FusedAdamW { lr, beta1, beta2, weight_decay, eps };
                fused_adamw(&p, g, &self.exp_avg, &self.exp_avg_sq, step, h).expect("fused AdamW arguments agree");
            }
            Kernel::Reference { scratch, denom } => {
                let step_size = lr / (1.0 - beta1.powf(k));
                let bias_correction2_sqrt = (1.0 - beta2.powf(k)).sqrt();
                let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                let _ = self.exp_avg.lerp_(g, 1.0 - beta1);
                let _ = self.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = self.exp_avg_sq.addcmul_(&g.mul_scalar_out(scratch, 1.0 - beta2), g);
                let _ = self.exp_avg_sq.sqrt_out(denom);
                let _ = denom.g_div_scalar_(bias_correction2_sqrt);
                let _ = denom.g_add_scalar_(eps);
                let _ = p.addcdiv_(&self.exp_avg.mul_scalar_out(scratch, -step_size), denom);
            }
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
    fn the_fused_kernel_takes_the_same_steps() {
        // ATen's fused kernel (what CUDA runs) against the reference arithmetic over a few
        // hundred parameters and several steps with warmup, decay and changing gradients.
        tch::manual_seed(3);
        let make = || {
            let vs = VarStore::new(Device::Cpu);
            let _ = vs.root().var_copy("w", &Tensor::randn([300], (Kind::Float, Device::Cpu)));
            let flat = FlatParams::new(&vs).unwrap();
            (vs, flat)
        };
        let (_a, reference) = make();
        tch::manual_seed(3);
        let (_b, fused) = make();
        assert!(reference.data().equal(fused.data()));
        let config = AdamWConfig { lr: 1e-2, betas: (0.9, 0.99), eps: 1e-8, weight_decay: 0.03, warmup: 3 };
        let (mut r, mut f) = (AdamW::new(&reference, config), AdamW::fused(&fused, config));
        for _ in 0..6 {
            let g = Tensor::randn([300], (Kind::Float, Device::Cpu));
            tch::no_grad(|| {
                reference.grad().shallow_clone().copy_(&g);
                fused.grad().shallow_clone().copy_(&g);
            });
            assert_eq!(r.step(&reference), f.step(&fused));
        }
        let moved = (reference.data() - fused.data()).abs().max().double_value(&[]);
        assert!(moved < 1e-6, "fused and reference parameters differ by {moved}");
        let second = (r.moments().1 - f.moments().1).abs().max().double_value(&[]);
        assert!(second < 1e-6 * f.moments().1.abs().max().double_value(&[]), "{second}");
        assert_eq!(f.step_count(), 6);
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
