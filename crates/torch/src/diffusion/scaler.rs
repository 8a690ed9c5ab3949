//! Dynamic loss scaling for float16 training, the algorithm of PyTorch's
//! `torch.amp.GradScaler` (Micikevicius et al. 2018, "Mixed Precision
//! Training"): the loss is multiplied by `scale` before backward so small
//! gradients survive float16; the gradients are divided by it again before
//! clipping and the optimizer step. A step whose gradients hold inf or NaN is
//! skipped and the scale halved; after `growth_interval` good steps in a row the
//! scale doubles. Defaults are GradScaler's: 2^16, x2, x0.5, 2000 steps.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::flat::FlatParams;

/// The scaler's state; checkpointed with the model so a resumed run continues exactly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current loss scale.
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub good_steps: u64,
}

/// GradScaler's `growth_interval`.
pub const GROWTH_INTERVAL: u64 = 2000;

impl Default for LossScaler {
    /// GradScaler's `init_scale`, 2^16.
    fn default() -> Self {
        Self { scale: 65536.0, good_steps: 0 }
    }
}

impl LossScaler {
    /// `loss * scale`, to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// After backward and [`FlatParams::attach_grads`]: divides the gradients by
    /// the scale and updates the scale. Returns false when the gradients were not
    /// finite: the caller must skip this optimizer step (and zero the gradients).
    pub fn unscale(&mut self, params: &FlatParams) -> bool {
        let finite = tch::no_grad(|| params.grad().isfinite().all().int64_value(&[]) != 0);
        if finite {
            tch::no_grad(|| {
                let _ = params.grad().shallow_clone().g_mul_scalar_(1.0 / self.scale);
            });
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
        }
        finite
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // powers of two, exact
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    use super::*;

    fn params() -> (VarStore, FlatParams) {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[3], tch::nn::Init::Const(1.0));
        let flat = FlatParams::new(&vs).unwrap();
        (vs, flat)
    }

    fn set_grad(p: &FlatParams, values: &[f32]) {
        tch::no_grad(|| {
            p.grad().shallow_clone().copy_(&Tensor::from_slice(values));
        });
    }

    #[test]
    fn finite_gradients_are_unscaled_and_the_scale_grows_after_the_interval() {
        let (_vs, p) = params();
        let mut s = LossScaler::default();
        set_grad(&p, &[65536.0, -131_072.0, 0.0]);
        assert!(s.unscale(&p));
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), [1.0, -2.0, 0.0]);
        s.good_steps = GROWTH_INTERVAL - 1;
        set_grad(&p, &[1.0, 1.0, 1.0]);
        assert!(s.unscale(&p));
        assert_eq!((s.scale, s.good_steps), (131_072.0, 0));
    }

    #[test]
    fn overflowing_gradients_skip_the_step_and_halve_the_scale() {
        let (_vs, p) = params();
        let mut s = LossScaler { scale: 1024.0, good_steps: 7 };
        set_grad(&p, &[1.0, f32::INFINITY, 2.0]);
        assert!(!s.unscale(&p));
        assert_eq!((s.scale, s.good_steps), (512.0, 0));
        set_grad(&p, &[f32::NAN, 0.0, 0.0]);
        assert!(!s.unscale(&p));
        assert_eq!(s.scale, 256.0);
    }

    #[test]
    fn the_scaled_loss_is_the_loss_times_the_scale() {
        let s = LossScaler { scale: 8.0, good_steps: 0 };
        let loss = Tensor::from_slice(&[0.25f32]).to_kind(Kind::Float);
        assert_eq!(s.scale_loss(&loss).double_value(&[0]), 2.0);
    }
}
