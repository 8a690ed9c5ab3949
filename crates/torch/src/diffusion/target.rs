//! What the network predicts: the noise `eps`, the clean sample `x0`, or the velocity
//! `v = alpha * eps - sigma * x0` (Salimans & Ho 2022, "Progressive Distillation", sec. 4),
//! with the forward process `x_t = alpha * x0 + sigma * eps` and the conversions of a
//! prediction back to `x0` and `eps` that samplers need.

use std::fmt;
use std::str::FromStr;

use tch::Tensor;

use super::schedule::ScheduleTensors;

/// The quantity a diffusion network is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The added noise `eps` (Ho et al. 2020).
    Eps,
    /// The clean sample `x0`.
    X0,
    /// The velocity `v = alpha * eps - sigma * x0` (Salimans & Ho 2022).
    V,
}

/// All targets, in a fixed order (for tables and tests).
pub const TARGETS: [Target; 3] = [Target::Eps, Target::X0, Target::V];

impl Target {
    /// The name used in pipelines: `eps`, `x0` or `v`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Eps => "eps",
            Self::X0 => "x0",
            Self::V => "v",
        }
    }

    /// The regression target for clean data `x0`, noise `eps` and timesteps `t`.
    pub fn target(self, schedule: &ScheduleTensors, x0: &Tensor, eps: &Tensor, t: &Tensor) -> Tensor {
        match self {
            Self::Eps => eps.shallow_clone(),
            Self::X0 => x0.shallow_clone(),
            Self::V => coef(&schedule.alpha_at(t), eps) * eps - coef(&schedule.sigma_at(t), x0) * x0,
        }
    }

    /// The `x0` implied by a prediction `pred` at `x_t`:
    /// eps: `(x_t - sigma * eps) / alpha`; v: `alpha * x_t - sigma * v` (as `alpha^2 + sigma^2 = 1`).
    /// An eps prediction at a zero-SNR timestep (`alpha = 0`) gives non-finite values.
    pub fn to_x0(self, schedule: &ScheduleTensors, pred: &Tensor, x_t: &Tensor, t: &Tensor) -> Tensor {
        let (alpha, sigma) = (coef(&schedule.alpha_at(t), x_t), coef(&schedule.sigma_at(t), x_t));
        match self {
            Self::Eps => (x_t - sigma * pred) / alpha,
            Self::X0 => pred.shallow_clone(),
            Self::V => alpha * x_t - sigma * pred,
        }
    }

    /// The `eps` implied by a prediction `pred` at `x_t`:
    /// x0: `(x_t - alpha * x0) / sigma`; v: `sigma * x_t + alpha * v`.
    pub fn to_eps(self, schedule: &ScheduleTensors, pred: &Tensor, x_t: &Tensor, t: &Tensor) -> Tensor {
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

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not `eps`, `x0` or `v`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown diffusion target `{0}` (expected one of: eps, x0, v)")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TARGETS.into_iter().find(|t| t.name() == name).ok_or_else(|| UnknownTarget(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;
    use crate::diffusion::schedule::Schedule;

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

    #[test]
    fn parses_target_names() {
        assert_eq!("v".parse::<Target>(), Ok(Target::V));
        assert_eq!("x0".parse::<Target>().unwrap().to_string(), "x0");
        assert_eq!(
            "noise".parse::<Target>().unwrap_err().to_string(),
            "unknown diffusion target `noise` (expected one of: eps, x0, v)"
        );
    }
}
