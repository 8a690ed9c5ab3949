//! Discrete noise schedules: the beta tables of guided-diffusion and the
//! quantities derived from them, kept in `f64` as the reference keeps them.
//! No libtorch: the checker validates schedules with it; `msnr-torch` uploads the tables.
//!
//! For `T` steps and `beta_t`: `abar_t = prod_{s <= t} (1 - beta_s)`,
//! `alpha_t = sqrt(abar_t)`, `sigma_t = sqrt(1 - abar_t)`,
//! `SNR_t = abar_t / (1 - abar_t)`, and `x_t = alpha_t * x0 + sigma_t * eps`
//! (Ho et al. 2020; guided-diffusion `GaussianDiffusion.__init__`).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// Largest beta the cosine schedule allows (guided-diffusion `betas_for_alpha_bar`).
const COSINE_MAX_BETA: f64 = 0.999;
/// The cosine schedule's offset `s` (Nichol & Dhariwal 2021, eq. 17).
const COSINE_OFFSET: f64 = 0.008;

/// Why a beta table cannot make a schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A schedule needs at least one step.
    #[error("a noise schedule needs at least 1 step, got 0")]
    NoSteps,
    /// Every beta must be finite and in `(0, 1]`.
    #[error("beta[{index}] = {value} is outside (0, 1]")]
    BetaOutOfRange {
        /// Position of the offending beta.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// `1 - abar` rounds to zero, so the SNR would be infinite.
    #[error("beta[{index}] is so small that 1 - abar rounds to 0 (infinite SNR at t = {index})")]
    InfiniteSnr {
        /// The first timestep whose SNR is infinite.
        index: usize,
    },
    /// Zero-terminal-SNR rescaling needs a schedule whose SNR is not already zero at t = 0.
    #[error("cannot rescale to zero terminal SNR: alpha at t = 0 equals alpha at t = T-1")]
    DegenerateRescale,
}

/// A schedule as a pipeline names it: `linear { steps }` or `cosine { steps }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedSchedule {
    /// [`Schedule::linear`] with `steps` steps.
    Linear {
        /// Number of diffusion steps `T`.
        steps: usize,
    },
    /// [`Schedule::cosine`] with `steps` steps.
    Cosine {
        /// Number of diffusion steps `T`.
        steps: usize,
    },
}

impl NamedSchedule {
    /// The beta tables.
    ///
    /// # Errors
    /// As [`Schedule::linear`] and [`Schedule::cosine`].
    pub fn build(self) -> Result<Schedule, ScheduleError> {
        match self {
            Self::Linear { steps } => Schedule::linear(steps),
            Self::Cosine { steps } => Schedule::cosine(steps),
        }
    }

    /// Number of diffusion steps `T`.
    #[must_use]
    pub fn steps(self) -> usize {
        match self {
            Self::Linear { steps } | Self::Cosine { steps } => steps,
        }
    }
}

/// A discrete noise schedule with its derived tables (all `f64`, length `T`).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    alpha: Vec<f64>,
    sigma: Vec<f64>,
    snr: Vec<f64>,
}

impl Schedule {
    /// The linear schedule of Ho et al., extended to any `T` as in guided-diffusion's
    /// `get_named_beta_schedule("linear", T)`: `scale = 1000 / T`, betas evenly spaced
    /// (`np.linspace`, float64) from `scale * 1e-4` to `scale * 0.02`.
    ///
    /// # Errors
    /// When `steps` is 0, or `T` is so small that a beta exceeds 1 (`T < 20`: the last beta is `20 / T`).
    pub fn linear(steps: usize) -> Result<Self, ScheduleError> {
        let scale = 1000.0 / real(steps);
        Self::from_betas(linspace(scale * 0.0001, scale * 0.02, steps))
    }

    /// The cosine schedule (Nichol & Dhariwal 2021, eq. 17) discretised as guided-diffusion's
    /// `betas_for_alpha_bar`: `beta_i = min(1 - abar((i+1)/T) / abar(i/T), 0.999)` with
    /// `abar(t) = cos^2((t + 0.008) / 1.008 * pi / 2)`.
    ///
    /// # Errors
    /// When `steps` is 0.
    pub fn cosine(steps: usize) -> Result<Self, ScheduleError> {
        let abar = |t: f64| ((t + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * PI / 2.0).cos().powi(2);
        let n = real(steps);
        let betas =
            (0..steps).map(|i| (1.0 - abar(real(i + 1) / n) / abar(real(i) / n)).min(COSINE_MAX_BETA)).collect();
        Self::from_betas(betas)
    }

    /// A schedule from an explicit beta table.
    ///
    /// # Errors
    /// When the table is empty, a beta is not in `(0, 1]`, or an SNR would be infinite.
    pub fn from_betas(betas: Vec<f64>) -> Result<Self, ScheduleError> {
        if betas.is_empty() {
            return Err(ScheduleError::NoSteps);
        }
        if let Some((index, &value)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b <= 1.0)) {
            return Err(ScheduleError::BetaOutOfRange { index, value });
        }
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .scan(1.0, |acc, b| {
                *acc *= 1.0 - b;
                Some(*acc)
            })
            .collect();
        if let Some(index) = alphas_cumprod.iter().position(|a| 1.0 - a == 0.0) {
            return Err(ScheduleError::InfiniteSnr { index });
        }
        let alpha = alphas_cumprod.iter().map(|a| a.sqrt()).collect();
        let sigma = alphas_cumprod.iter().map(|a| (1.0 - a).sqrt()).collect();
        let snr = alphas_cumprod.iter().map(|a| a / (1.0 - a)).collect();
        Ok(Self { betas, alphas_cumprod, alpha, sigma, snr })
    }

    /// The same schedule rescaled to zero terminal SNR: Lin et al. 2024, "Common Diffusion
    /// Noise Schedules and Sample Steps are Flawed", Algorithm 1 (diffusers'
    /// `rescale_zero_terminal_snr`). `sqrt(abar)` is shifted so its last value is 0 and scaled
    /// so its first is unchanged; betas are recovered from the new `abar` ratios.
    ///
    /// # Errors
    /// When `alpha` is constant over the schedule (nothing to rescale).
    pub fn rescale_zero_terminal_snr(&self) -> Result<Self, ScheduleError> {
        let (first, last) = (self.alpha[0], self.alpha[self.alpha.len() - 1]);
        if first - last == 0.0 {
            return Err(ScheduleError::DegenerateRescale);
        }
        let abar: Vec<f64> = self.alpha.iter().map(|a| ((a - last) * (first / (first - last))).powi(2)).collect();
        let ratios = std::iter::once(abar[0]).chain(abar.windows(2).map(|w| w[1] / w[0]));
        Self::from_betas(ratios.map(|r| 1.0 - r).collect())
    }

    /// Number of diffusion steps `T`.
    #[must_use]
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// `beta_t`.
    #[must_use]
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// `abar_t = prod_{s <= t} (1 - beta_s)`.
    #[must_use]
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// `alpha_t = sqrt(abar_t)`, the signal scale.
    #[must_use]
    pub fn alpha(&self) -> &[f64] {
        &self.alpha
    }

    /// `sigma_t = sqrt(1 - abar_t)`, the noise scale.
    #[must_use]
    pub fn sigma(&self) -> &[f64] {
        &self.sigma
    }

    /// `SNR_t = abar_t / (1 - abar_t)`.
    #[must_use]
    pub fn snr(&self) -> &[f64] {
        &self.snr
    }
}

/// A step count or index as `f64` (exact: counts stay far below 2^52).
#[allow(clippy::cast_precision_loss)]
fn real(n: usize) -> f64 {
    n as f64
}

/// `np.linspace(start, stop, n)` bit for bit: `start + i * step` with the last value set to
/// `stop` exactly (numpy `function_base.linspace`).
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let delta = (stop - start) / real(n - 1);
    let mut values: Vec<f64> = (0..n).map(|i| real(i) * delta + start).collect();
    values[n - 1] = stop;
    values
}

#[cfg(test)]
#[allow(clippy::float_cmp, clippy::cast_possible_truncation)] // exact values are the point
mod tests {
    use super::*;

    #[test]
    fn linear_1000_matches_ho_et_al_endpoints() {
        let s = Schedule::linear(1000).unwrap();
        assert_eq!(s.betas()[0], 1e-4);
        assert_eq!(s.betas()[999], 0.02);
        assert!((s.betas()[1] - (1e-4 + (0.02 - 1e-4) / 999.0)).abs() < 1e-18);
    }

    #[test]
    fn derived_tables_are_consistent() {
        let s = Schedule::cosine(100).unwrap();
        for t in 0..100 {
            let (a, sg) = (s.alpha()[t], s.sigma()[t]);
            assert!((a * a + sg * sg - 1.0).abs() < 1e-12);
            assert!((s.snr()[t] - (a / sg).powi(2)).abs() <= 1e-10 * s.snr()[t].max(1.0));
        }
        assert!(s.snr().windows(2).all(|w| w[1] < w[0]), "SNR decreases with t");
        assert!(s.betas().iter().all(|b| *b <= COSINE_MAX_BETA));
    }

    #[test]
    fn from_betas_rejects_bad_tables() {
        assert_eq!(Schedule::from_betas(vec![]), Err(ScheduleError::NoSteps));
        assert_eq!(Schedule::from_betas(vec![0.1, 0.0]), Err(ScheduleError::BetaOutOfRange { index: 1, value: 0.0 }));
        assert!(matches!(Schedule::from_betas(vec![f64::NAN]), Err(ScheduleError::BetaOutOfRange { index: 0, .. })));
        assert_eq!(Schedule::from_betas(vec![1e-20, 0.5]), Err(ScheduleError::InfiniteSnr { index: 0 }));
        assert!(Schedule::linear(10).is_err(), "scale 100 pushes beta past 1");
        assert!(Schedule::linear(19).is_err() && Schedule::linear(20).is_ok(), "the last beta is 20 / T");
    }

    #[test]
    fn zero_terminal_snr_keeps_first_alpha_and_zeroes_last() {
        let s = Schedule::linear(1000).unwrap();
        let z = s.rescale_zero_terminal_snr().unwrap();
        assert!((z.alpha()[0] - s.alpha()[0]).abs() < 1e-15);
        assert_eq!(z.snr()[999], 0.0);
        assert_eq!(z.betas()[999], 1.0);
        assert!(z.snr()[998] > 0.0);
    }
}
