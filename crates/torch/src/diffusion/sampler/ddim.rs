//! DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12 with
//! eq. 16's `sigma_t(eta)`), as diffusers' `DDIMScheduler.step` and guided-diffusion's
//! `ddim_sample` compute it:
//! `x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - std^2) eps + std z`,
//! `std = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)`,
//! with `abar_prev = 1` after the last timestep (`set_alpha_to_one`).
//!
//! Timesteps: diffusers' "leading" spacing (`steps_offset = 0`): `k * (T / N)` for
//! `k = N-1, ..., 0` (integer stride, so the largest is `(N-1) T/N`, not `T - 1`); for `N`
//! dividing `T` it is guided-diffusion's `space_timesteps(T, "ddimN")`.

use tch::Tensor;

use super::discrete::Walk;
use super::{GuidedModel, Sampler, SamplerConfig, StepNoise};
use crate::diffusion::schedule::Schedule;

/// DDIM with `eta`, optional x0 clipping.
#[derive(Debug, Clone, PartialEq)]
pub struct Ddim {
    walk: Walk,
    eta: f64,
    clip: bool,
}

impl Ddim {
    /// DDIM with `cfg.steps` steps (at most `T`), `cfg.eta` and `cfg.clip_x0` on `schedule`.
    #[must_use]
    pub fn new(cfg: &SamplerConfig, schedule: &Schedule) -> Self {
        let stride = schedule.steps() / cfg.steps;
        let timesteps = (0..cfg.steps).rev().map(|k| k * stride).collect();
        Self { walk: Walk::new(timesteps, schedule), eta: cfg.eta, clip: cfg.clip_x0 }
    }
}

impl Sampler for Ddim {
    fn nfe(&self) -> usize {
        self.walk.nfe()
    }

    fn timesteps(&self) -> Vec<i64> {
        self.walk.timesteps()
    }

    fn sample(&self, model: &GuidedModel, z: &Tensor, y: Option<&Tensor>, noise: &mut dyn StepNoise) -> Tensor {
        self.walk.run(model, z, y, self.clip, |s, _, x0, eps| {
            let (a, a_prev) = (s.abar, s.abar_prev);
            let std = self.eta * ((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)).sqrt();
            let mut x = x0 * a_prev.sqrt() + eps * (1.0 - a_prev - std * std).sqrt();
            if self.eta > 0.0 {
                x += noise.step(s.k, &x) * std;
            }
            x
        })
    }
}
