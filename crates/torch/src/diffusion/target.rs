//! The tensor formulas of the prediction targets (the enum itself, [`Target`], is
//! libtorch-free and lives in the front-end crate): the regression target of a batch with
//! the forward process `x_t = alpha * x0 + sigma * eps`, and the conversions of a
//! prediction back to `x0` and `eps` that samplers need (Salimans & Ho 2022, sec. 4).

use tch::Tensor;

pub use msnr::diffusion::target::{Target, UnknownTarget, TARGETS};

use super::schedule::ScheduleTensors;

/// The tensor side of a [`Target`].
pub trait TargetOps {
    /// The regression target for clean data `x0`, noise `eps` and timesteps `t`.
    fn target(self, schedule: &ScheduleTensors, x0: &Tensor, eps: &Tensor, t: &Tensor) -> Tensor;
    /// The `x0` implied by a prediction `pred` at `x_t`:
    /// eps: `(x_t - sigma * eps) / alpha`; v: `alpha * x_t - sigma * v` (as `alpha^2 + sigma^2 = 1`).
    /// An eps prediction at a zero-SNR timestep (`alpha = 0`) gives non-finite values.
    fn to_x0(self, schedule: &ScheduleTensors, pred: &Tensor, x_t: &Tensor, t: &Tensor) -> Tensor;
    /// The `eps` implied by a prediction `pred` at `x_t`:
    /// x0: `(x_t - alpha * x0) / sigma`; v: `sigma * x_t + alpha * v`.
    fn to_eps(self, schedule: &ScheduleTensors, pred: &Tensor, x_t: &Tensor, t: &Tensor) -> Tensor;
}

impl TargetOps for Target {
    fn target(self, schedule: &ScheduleTensors, x0: &Tensor, eps: &Tensor, t: &Tensor) -> Tensor {
        match self {
            Self::Eps => eps.shallow_clone(),
            Self::X0 => x0.shallow_clone(),
            Self::V => coef(&schedule.alpha_at(t), eps) * eps - coef(&schedule.sigma_at(t), x0) * x0,
        }
    }

    fn to_x0(self, schedule: &ScheduleTensors, pred: &Tensor, x_t: &Tensor, t: &Tensor) -> Tensor {
        let (alpha, sigma) = (coef(&schedule.alpha_at(t), x_t), coef(&schedule.sigma_at(t), x_t));
        match self {
            Self::Eps => (x_t - sigma * pred) / alpha,
            Self::X0 => pred.shallow_clone(),
            Self::V => alpha * x_t - sigma * pred,
        }
    }

    fn to_eps(self, schedule: &ScheduleTensors, pred: &Tensor, x_t: &Tensor, t: &Tensor) -> Tensor {
        let (alpha, sigma) = (coef(&schedule.alpha_at(t), x_t), coef(&schedule.sigma_at(t), x_t));
        match self {
            Self::Eps => pred.shallow_clone(),
            Self::X0 => (x_t - alpha * pred) / sigma,
            Self::V => sigma * x_t + alpha * pred,
        }
    }
}

/// The forward process `x_t = alpha_t * x0 + sigma_t * eps` (guided-diffusion `q_sample`).
pub fn q_sample(schedule: &ScheduleTensors, x0: &Tensor, eps: &Tensor, t: &Tensor) -> Tensor {
    coef(&schedule.alpha_at(t), x0) * x0 + coef(&schedule.sigma_at(t), eps) * eps
}

/// A per-sample coefficient of shape `[B]` reshaped to `[B, 1, ..., 1]` to broadcast against
/// `like`, in `like`'s dtype.
fn coef(values: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![1i64; like.dim()];
    shape[0] = -1;
    values.reshape(shape.as_slice()).to_kind(like.kind())
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;
    use crate::diffusion::schedule::{OnDevice, Schedule};

    fn setup() -> (ScheduleTensors, Tensor, Tensor, Tensor) {
        tch::manual_seed(0);
        let s = Schedule::cosine(100).unwrap().to_device(Device::Cpu);
        let x0 = Tensor::randn([4, 2, 3, 3], (Kind::Double, Device::Cpu));
        let eps = Tensor::randn([4, 2, 3, 3], (Kind::Double, Device::Cpu));
        (s, x0, eps, Tensor::from_slice(&[0i64, 10, 50, 99]))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn every_prediction_converts_back_to_x0_and_eps() {
        let (s, x0, eps, t) = setup();
        let x_t = q_sample(&s, &x0, &eps, &t);
        for target in TARGETS {
            let pred = target.target(&s, &x0, &eps, &t);
            assert!(max_diff(&target.to_x0(&s, &pred, &x_t, &t), &x0) < 1e-5, "{target} -> x0");
            assert!(max_diff(&target.to_eps(&s, &pred, &x_t, &t), &eps) < 1e-5, "{target} -> eps");
        }
    }

    #[test]
    fn velocity_is_alpha_eps_minus_sigma_x0() {
        let (s, x0, eps, t) = setup();
        let v = Target::V.target(&s, &x0, &eps, &t);
        let (a, sg) = (s.alpha_at(&t).get(2).double_value(&[]), s.sigma_at(&t).get(2).double_value(&[]));
        assert!(max_diff(&v.get(2), &(eps.get(2) * a - x0.get(2) * sg)) < 1e-12);
    }
}
