//! EDM's Euler sampler (Karras et al. 2022, Algorithm 1 without its 2nd-order correction;
//! EDM's `ablation_sampler` with solver 'euler', `S_churn = 0`) on the model's discrete noise
//! levels ([`KarrasGrid`]): `x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i`. NFE `N`.

use tch::Tensor;

use super::grid::KarrasGrid;
use super::{GuidedModel, Sampler, SamplerConfig, StepNoise};
use crate::diffusion::schedule::Schedule;

/// Euler on the model's sigmas.
#[derive(Debug, Clone, PartialEq)]
pub struct Euler {
    grid: KarrasGrid,
}

impl Euler {
    /// Euler with `cfg.steps` steps on `schedule`'s sigmas.
    #[must_use]
    pub fn new(cfg: &SamplerConfig, schedule: &Schedule) -> Self {
        Self { grid: KarrasGrid::new(cfg, schedule) }
    }
}

impl Sampler for Euler {
    fn nfe(&self) -> usize {
        self.grid.timesteps().len()
    }

    fn timesteps(&self) -> Vec<i64> {
        self.grid.timesteps().to_vec()
    }

    fn sample(&self, model: &GuidedModel, z: &Tensor, y: Option<&Tensor>, _: &mut dyn StepNoise) -> Tensor {
        let sigmas = self.grid.sigmas();
        let mut x = z * sigmas[0];
        for i in 0..sigmas.len() - 1 {
            x = &x + self.grid.direction(model, &x, i, y) * (sigmas[i + 1] - sigmas[i]);
        }
        x
    }
}
