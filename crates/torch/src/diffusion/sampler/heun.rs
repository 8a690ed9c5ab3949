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

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;
    use crate::diffusion::sampler::model::tests::LabelNet;
    use crate::diffusion::sampler::noise::FixedNoise;
    use crate::diffusion::target::Target;

    #[test]
    fn calls_the_model_2n_minus_1_times_at_its_timesteps() {
        let cfg = SamplerConfig { steps: 5, ..SamplerConfig::default() };
        let heun = Heun::new(&cfg, &Schedule::cosine(1000).unwrap());
        let net = LabelNet::default();
        let model = GuidedModel::new(&net, Target::X0, &cfg, Kind::Float).unwrap();
        let z = Tensor::zeros([3, 1, 2, 2], (Kind::Double, Device::Cpu));
        let y = Tensor::from_slice(&[1i64, 2, 3]);
        let mut none = FixedNoise(Tensor::zeros([0], (Kind::Double, Device::Cpu)));
        let x = heun.sample(&model, &z, Some(&y), &mut none);
        let calls: Vec<i64> = net.calls.lock().unwrap().iter().map(|c| c.1).collect();
        assert_eq!((heun.nfe(), calls.len()), (9, 9));
        assert_eq!(calls, heun.timesteps());
        assert_eq!(*calls.last().unwrap(), 0, "the last evaluation is at the smallest sigma, t = 0");
        // x0 model, last step Euler to sigma 0: the sample is the last D = F = label + 0 / 1000.
        assert!((x.double_value(&[2, 0, 1, 1]) - 3.0).abs() < 1e-6);
    }
}
