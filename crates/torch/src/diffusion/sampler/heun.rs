//! EDM's 2nd-order Heun sampler, deterministic (Karras et al. 2022, Algorithm 1; EDM's
//! `ablation_sampler` with solver 'heun', `S_churn = 0`), on the model's discrete noise
//! levels ([`KarrasGrid`]): from `x = sigma_0 z`, each step takes an Euler step to
//! `sigma_{i+1}` and corrects it with the slope there, `x_{i+1} = x_i + h (d_i + d'_i) / 2`;
//! the last step, to `sigma_N = 0`, stays Euler (`x_N = D(x_{N-1}; sigma_{N-1})`). NFE `2N - 1`.

use tch::Tensor;

use super::grid::KarrasGrid;
use super::{GuidedModel, Sampler, SamplerConfig, StepNoise};
use crate::diffusion::schedule::Schedule;

/// Heun on the model's sigmas.
#[derive(Debug, Clone, PartialEq)]
pub struct Heun {
    grid: KarrasGrid,
}

impl Heun {
    /// Heun with `cfg.steps` steps on `schedule`'s sigmas.
    #[must_use]
    pub fn new(cfg: &SamplerConfig, schedule: &Schedule) -> Self {
        Self { grid: KarrasGrid::new(cfg, schedule) }
    }

    /// The noise levels it steps through.
    #[must_use]
    pub fn grid(&self) -> &KarrasGrid {
        &self.grid
    }
}

impl Sampler for Heun {
    fn nfe(&self) -> usize {
        2 * self.grid.timesteps().len() - 1
    }

    fn timesteps(&self) -> Vec<i64> {
        let t = self.grid.timesteps();
        t.iter().zip(&t[1..]).flat_map(|(a, b)| [*a, *b]).chain(t.last().copied()).collect()
    }

    fn sample(&self, model: &GuidedModel, z: &Tensor, y: Option<&Tensor>, _: &mut dyn StepNoise) -> Tensor {
        let sigmas = self.grid.sigmas();
        let last = sigmas.len() - 2;
        let mut x = z * sigmas[0];
        for i in 0..=last {
            let step = sigmas[i + 1] - sigmas[i];
            let slope = self.grid.direction(model, &x, i, y);
            let euler = &x + &slope * step;
            x = if i == last {
                euler
            } else {
                let slope_next = self.grid.direction(model, &euler, i + 1, y);
                &x + (slope * 0.5 + slope_next * 0.5) * step // EDM Algorithm 1, line 8
            };
        }
        x
    }
}
