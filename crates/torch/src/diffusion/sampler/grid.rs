//! The noise levels EDM's samplers step through on a discrete model, as the seed builds
//! them (`scripts_vit/sampler_edm.py` `Net`, run by EDM's `ablation_sampler` with
//! discretization 'edm', schedule 'linear', scaling 'none'), and the denoiser `D(x; sigma)`.
//!
//! - The model's sigmas (Karras et al. 2022, "Elucidating the Design Space...", appendix C.3.4,
//!   the iDDPM discretization): `u[M] = 0`, `u[j-1] = sqrt((u[j]^2 + 1) / max(abar(j-1) / abar(j),
//!   C_1) - 1)` for `j = M..1`. The seed's `abar(j)` is the closed-form cosine `sin^2(pi/2 * j /
//!   M / (1 + C_2))`; here the ratio `abar(j-1) / abar(j)` is taken from the schedule itself:
//!   it is `1 - beta[M - j]` (the seed's `j` counts from pure noise; its `abar(M)` is guided-
//!   diffusion's normalisation `f(0)`). For the cosine schedule the two agree to 8e-14
//!   (relative, M = 1000, float64); for the linear one the seed's closed form (1001 betas)
//!   is not the schedule the model was trained with, and ours is. So `u[j] = sqrt(1/abar_t - 1)`
//!   with `t = M - 1 - j`, the model's integer timestep at `u[j]`.
//! - The grid (EDM eq. 5): `sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho`,
//!   `smin = max(sigma_min, u[M-1])`, `smax = min(sigma_max, u[0])`; each `sigma_i` rounded to the
//!   nearest `u[j]` (`Net.round_sigma`, first on ties), then a final 0.
//! - `D(x; sigma)` from the net's output `F` at `c_in x` (`c_in = 1/sqrt(sigma^2 + 1)`) and timestep
//!   `M - 1 - j`: eps: `D = x - sigma F`; x0: `D = F`; v: `D = x / (sigma^2 + 1) - sigma /
//!   sqrt(sigma^2 + 1) F`. The v form: `c_in x = alpha x0 + s eps` with `alpha = c_in`, `s = sigma c_in`,
//!   and `x0 = alpha (c_in x) - s v` (Salimans & Ho 2022, appendix D); it is EDM Table 1's
//!   preconditioning with `sigma_data = 1` (`c_skip = 1/(sigma^2+1)`, `c_out = -sigma/sqrt(sigma^2+1)`).
//!
//! The seed computes its u-grid in float32 (up to 4.8e-4 relative from float64 at the top of
//! the grid); this grid is float64.

use tch::Tensor;

use super::{timestep, GuidedModel, SamplerConfig};
use crate::diffusion::schedule::Schedule;
use crate::diffusion::target::Target;

/// EDM's noise levels on a discrete model: the rounded grid and the model's timesteps.
#[derive(Debug, Clone, PartialEq)]
pub struct KarrasGrid {
    /// `sigma_0 > ... > sigma_{N-1} > 0 = sigma_N`, each but the last one of the model's `u[j]`.
    sigmas: Vec<f64>,
    /// The model's integer timestep `M - 1 - j` at each `sigma_i`, `i < N`.
    timesteps: Vec<i64>,
}

impl KarrasGrid {
    /// The grid of `cfg` (`steps`, `sigma_min`, `sigma_max`, `rho`, `c1`) on `schedule`.
    #[must_use]
    pub fn new(cfg: &SamplerConfig, schedule: &Schedule) -> Self {
        let u = model_sigmas(schedule, cfg.c1);
        let m = u.len() - 1;
        let (smin, smax) = (cfg.sigma_min.max(u[m - 1]), cfg.sigma_max.min(u[0]));
        let (lo, hi) = (smin.powf(1.0 / cfg.rho), smax.powf(1.0 / cfg.rho));
        let last = real(cfg.steps - 1);
        let mut sigmas = Vec::with_capacity(cfg.steps + 1);
        let mut timesteps = Vec::with_capacity(cfg.steps);
        for i in 0..cfg.steps {
            let j = nearest(&u[..m], (hi + real(i) / last * (lo - hi)).powf(cfg.rho));
            sigmas.push(u[j]);
            timesteps.push(timestep(m - 1 - j));
        }
        sigmas.push(0.0);
        Self { sigmas, timesteps }
    }

    /// The noise levels, final 0 included (`N + 1` values).
    #[must_use]
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// The model's integer timestep at each nonzero noise level (`N` values).
    #[must_use]
    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// `D(x; sigma_i)`, the denoised estimate at grid point `i < N`.
    pub fn denoise(&self, model: &GuidedModel, x: &Tensor, i: usize, y: Option<&Tensor>) -> Tensor {
        let sigma = self.sigmas[i];
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        let f = model.output(&(x * c_in), self.timesteps[i], y);
        match model.target() {
            Target::Eps => x - f * sigma,
            Target::X0 => f,
            Target::V => x / (sigma * sigma + 1.0) - f * (sigma / (sigma * sigma + 1.0).sqrt()),
        }
    }

    /// EDM's ODE direction `d = (x - D(x; sigma_i)) / sigma_i` (Karras et al. 2022, Algorithm 1, line 4).
    pub fn direction(&self, model: &GuidedModel, x: &Tensor, i: usize, y: Option<&Tensor>) -> Tensor {
        (x - self.denoise(model, x, i, y)) / self.sigmas[i]
    }
}

/// The model's discrete sigmas `u[0..=M]` (`u[M] = 0`), from the schedule's betas:
/// `u[j-1] = sqrt((u[j]^2 + 1) / max(1 - beta[M - j], c1) - 1)`.
#[must_use]
pub fn model_sigmas(schedule: &Schedule, c1: f64) -> Vec<f64> {
    let betas = schedule.betas();
    let m = betas.len();
    let mut u = vec![0.0; m + 1];
    for j in (1..=m).rev() {
        u[j - 1] = ((u[j] * u[j] + 1.0) / (1.0 - betas[m - j]).max(c1) - 1.0).sqrt();
    }
    u
}

/// The index of the `u[j]` nearest to `sigma`, the first on ties (`torch.cdist(...).argmin`).
/// `u[M] = 0` is left out by the caller: no grid point (all `>= u[M-1]`) is nearer to it.
fn nearest(u: &[f64], sigma: f64) -> usize {
    let mut best = 0;
    for (j, v) in u.iter().enumerate() {
        if (v - sigma).abs() < (u[best] - sigma).abs() {
            best = j;
        }
    }
    best
}

/// A step count or index as `f64` (exact below 2^52).
#[allow(clippy::cast_precision_loss)]
fn real(n: usize) -> f64 {
    n as f64
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // grid points are model sigmas exactly
mod tests {
    use std::f64::consts::PI;

    use super::*;

    /// The seed's closed form: `abar(j) = sin^2(pi/2 j / M / (1 + C_2))`, its own recurrence.
    fn seed_sigmas(m: usize) -> Vec<f64> {
        let abar = |j: usize| (0.5 * PI * real(j) / real(m) / 1.008).sin().powi(2);
        let mut u = vec![0.0; m + 1];
        for j in (1..=m).rev() {
            u[j - 1] = ((u[j] * u[j] + 1.0) / (abar(j - 1) / abar(j)).max(0.001) - 1.0).sqrt();
        }
        u
    }

    #[test]
    fn cosine_sigmas_agree_with_the_seeds_closed_form() {
        let ours = model_sigmas(&Schedule::cosine(1000).unwrap(), 0.001);
        let seed = seed_sigmas(1000);
        assert_eq!(ours[1000], 0.0);
        let worst = (0..1000).map(|j| ((ours[j] - seed[j]) / seed[j]).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-12, "relative difference {worst}");
        assert!((ours[0] - 20291.17).abs() < 0.01 && (ours[999] - 0.006_425_4).abs() < 1e-6);
    }

    #[test]
    fn sigmas_are_the_schedules_noise_to_signal_ratios() {
        let s = Schedule::cosine(1000).unwrap();
        let u = model_sigmas(&s, 0.001);
        for t in [0, 10, 500, 990] {
            let want = (1.0 / s.alphas_cumprod()[t] - 1.0).sqrt();
            assert!((u[999 - t] - want).abs() < 1e-9 * want, "t = {t}");
        }
    }

    #[test]
    fn grid_is_rounded_to_model_sigmas_and_ends_at_zero() {
        let cfg = SamplerConfig { steps: 18, ..SamplerConfig::default() };
        let s = Schedule::cosine(1000).unwrap();
        let grid = KarrasGrid::new(&cfg, &s);
        let u = model_sigmas(&s, 0.001);
        assert_eq!(grid.sigmas().len(), 19);
        assert_eq!(grid.sigmas()[18], 0.0);
        assert_eq!(grid.sigmas()[17], u[999], "sigma_min = max(0.002, u[M-1]) = u[M-1]");
        assert_eq!(grid.timesteps()[17], 0);
        assert!(grid.sigmas()[0] <= 80.0 * 1.01 && grid.sigmas()[0] >= 79.0);
        for (sigma, t) in grid.sigmas().iter().zip(grid.timesteps()) {
            assert_eq!(*sigma, u[999 - usize::try_from(*t).unwrap()]);
        }
        assert!(grid.sigmas().windows(2).all(|w| w[1] < w[0]));
    }
}
