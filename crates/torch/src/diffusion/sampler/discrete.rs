//! The walk of the discrete-time samplers ([`super::ddim`], [`super::ddpm`]): descending kept
//! timesteps of the schedule, at each the model's `x0` and `eps` ([`super::x0_and_eps`]) and
//! `abar` at this timestep and the next kept one (`abar_prev = 1` after the last, diffusers'
//! `set_alpha_to_one`), from which each sampler's own update computes the next state.

use tch::Tensor;

use super::{timestep, x0_and_eps, GuidedModel};
use crate::diffusion::schedule::Schedule;

/// Kept timesteps, descending, and the schedule's `abar_t`.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    timesteps: Vec<usize>,
    abar: Vec<f64>,
}

/// One step of a [`Walk`].
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Its index (0 first), for the step's noise.
    pub k: usize,
    /// The timestep the model is called at.
    pub t: i64,
    /// `abar_t`.
    pub abar: f64,
    /// `abar` at the next kept timestep, 1 after the last.
    pub abar_prev: f64,
}

impl Walk {
    /// The walk over `timesteps` (descending) of `schedule`.
    #[must_use]
    pub fn new(timesteps: Vec<usize>, schedule: &Schedule) -> Self {
        Self { timesteps, abar: schedule.alphas_cumprod().to_vec() }
    }

    /// Model evaluations per sample: one per kept timestep.
    #[must_use]
    pub fn nfe(&self) -> usize {
        self.timesteps.len()
    }

    /// The kept timesteps, as the nets take them.
    #[must_use]
    pub fn timesteps(&self) -> Vec<i64> {
        self.timesteps.iter().map(|t| timestep(*t)).collect()
    }

    /// From noise `z` (labels `y`): at each step, the model's `x0` and `eps` at the state (x0
    /// clamped with `clip`), and `update(step, x, x0, eps)` gives the next state.
    pub fn run(
        &self,
        model: &GuidedModel,
        z: &Tensor,
        y: Option<&Tensor>,
        clip: bool,
        mut update: impl FnMut(Step, &Tensor, Tensor, Tensor) -> Tensor,
    ) -> Tensor {
        let mut x = z.shallow_clone();
        for (k, &kept) in self.timesteps.iter().enumerate() {
            let (abar, t) = (self.abar[kept], timestep(kept));
            let abar_prev = self.timesteps.get(k + 1).map_or(1.0, |p| self.abar[*p]);
            let (x0, eps) = x0_and_eps(model.target(), &model.output(&x, t, y), &x, abar, clip);
            x = update(Step { k, t, abar, abar_prev }, &x, x0, eps);
        }
        x
    }
}
