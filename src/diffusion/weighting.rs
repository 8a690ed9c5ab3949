//! Loss weightings over timesteps, Min-SNR-gamma among them (Hang et al., ICCV 2023,
//! "Efficient Diffusion Training via Min-SNR Weighting Strategy", sec. 3.4 and 4.2).
//!
//! Every weighting is a weight `w_x0(SNR)` on the x0-space MSE. Because
//! `eps-MSE = SNR * x0-MSE` and `v-MSE = (SNR + 1) * x0-MSE`, the factor applied to the
//! target's own MSE is `w_x0` (x0), `w_x0 / SNR` (eps), `w_x0 / (SNR + 1)` (v).
//!
//! | weighting | `w_x0` | seed repo's `mse_loss_weight_type` |
//! |---|---|---|
//! | `Constant` | the target's own plain MSE: factor 1 | `constant` |
//! | `Snr` | `SNR` | `snr` (x0) |
//! | `InvSnr` | `1 / SNR` | `inv_snr` (x0: `1 / snr`) |
//! | `MinSnr(g)` | `min(SNR, g)` | `min_snr_k` (x0, eps), `vmin_snr_k` (v) |
//! | `MaxSnr(g)` | `max(SNR, g)`; `MaxSnr(1)` is truncated SNR | `max_snr_k`, `trunc_snr` |
//! | `SoftMinSnr(g)` | `SNR * g / (SNR + g)` (`HDiT`, Crowson et al. 2024) | - |
//!
//! Sources: github.com/TiankaiHang/Min-SNR-Diffusion-Training,
//! `guided_diffusion/gaussian_diffusion.py` `training_losses` (the `mse_loss_weight_type`
//! branches); diffusers `examples/text_to_image/train_text_to_image.py` `--snr_gamma`
//! (`min(snr, gamma) / snr` for eps, `/ (snr + 1)` for v).
//!
//! Zero SNR: where `SNR_t = 0` (zero-terminal-SNR schedules), the factor is 1 for every target
//! and weighting, as the seed repo sets `mse_loss_weight[snr == 0] = 1.0`. This is the only
//! place a 0/0 (`min(0, g) / 0`) or `1/0` can occur, so no factor is ever NaN or infinite
//! (schedules reject infinite SNR).
//!
//! No libtorch: the checker validates a pipeline's weighting with it; `msnr-torch` uploads
//! the [`FactorTable`] for the loss.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::schedule::Schedule;
use super::target::Target;

/// A timestep weighting of the diffusion loss, defined in x0 space (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// The plain MSE of whichever target: factor 1 (the baseline).
    Constant,
    /// `w_x0 = SNR`.
    Snr,
    /// `w_x0 = 1 / SNR` (the seed repo's x0-target `inv_snr`).
    InvSnr,
    /// `w_x0 = min(SNR, gamma)`: Min-SNR-gamma (paper default gamma = 5).
    MinSnr(f64),
    /// `w_x0 = max(SNR, gamma)`: truncated SNR for gamma = 1 (Salimans & Ho 2022).
    MaxSnr(f64),
    /// `w_x0 = SNR * gamma / (SNR + gamma)`: soft Min-SNR (`HDiT`, Crowson et al. 2024).
    SoftMinSnr(f64),
}

/// A weighting parameter that is not a positive finite number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("weighting `{weighting}` needs gamma > 0 and finite, got {gamma}")]
pub struct InvalidGamma {
    /// The weighting's name.
    pub weighting: &'static str,
    /// The rejected value.
    pub gamma: f64,
}

impl Weighting {
    /// Checks the parameter: gamma must be positive and finite.
    ///
    /// # Errors
    /// [`InvalidGamma`] naming the weighting and the value.
    pub fn validate(self) -> Result<Self, InvalidGamma> {
        match self.gamma() {
            Some(gamma) if !(gamma > 0.0 && gamma.is_finite()) => Err(InvalidGamma { weighting: self.name(), gamma }),
            _ => Ok(self),
        }
    }

    /// The pipeline name: `constant`, `snr`, `inv_snr`, `min_snr`, `max_snr`, `soft_min_snr`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Snr => "snr",
            Self::InvSnr => "inv_snr",
            Self::MinSnr(_) => "min_snr",
            Self::MaxSnr(_) => "max_snr",
            Self::SoftMinSnr(_) => "soft_min_snr",
        }
    }

    /// The parameter gamma, where the weighting has one.
    #[must_use]
    pub fn gamma(self) -> Option<f64> {
        match self {
            Self::MinSnr(g) | Self::MaxSnr(g) | Self::SoftMinSnr(g) => Some(g),
            Self::Constant | Self::Snr | Self::InvSnr => None,
        }
    }

    /// The x0-space weight `w_x0` at `snr` when training `target`. Only `Constant` depends on
    /// the target: its plain loss weighs x0-MSE by 1 (x0), `SNR` (eps) or `SNR + 1` (v).
    #[must_use]
    pub fn x0_weight(self, target: Target, snr: f64) -> f64 {
        match self {
            Self::Constant => target_scale(target, snr),
            Self::Snr => snr,
            Self::InvSnr => 1.0 / snr,
            Self::MinSnr(g) => snr.min(g),
            Self::MaxSnr(g) => snr.max(g),
            Self::SoftMinSnr(g) => snr * g / (snr + g),
        }
    }

    /// The factor on `target`'s own MSE at `snr`: `w_x0 / scale` with scale 1 (x0), `SNR`
    /// (eps) or `SNR + 1` (v); 1 for `Constant`, and 1 wherever `SNR = 0` (module docs).
    #[must_use]
    pub fn factor(self, target: Target, snr: f64) -> f64 {
        if snr == 0.0 || self == Self::Constant {
            return 1.0;
        }
        self.x0_weight(target, snr) / target_scale(target, snr)
    }
}

/// How much larger `target`'s MSE is than the x0 MSE: 1, `SNR` or `SNR + 1`.
fn target_scale(target: Target, snr: f64) -> f64 {
    match target {
        Target::X0 => 1.0,
        Target::Eps => snr,
        Target::V => snr + 1.0,
    }
}

impl fmt::Display for Weighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gamma() {
            Some(gamma) => write!(f, "{}(gamma = {gamma})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// The loss factor of every timestep for one target and weighting, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorTable {
    values: Vec<f64>,
}

impl FactorTable {
    /// `weighting.factor(target, SNR_t)` for `t = 0 .. T`.
    #[must_use]
    pub fn new(schedule: &Schedule, target: Target, weighting: Weighting) -> Self {
        Self { values: schedule.snr().iter().map(|&snr| weighting.factor(target, snr)).collect() }
    }

    /// The factors, indexed by timestep.
    #[must_use]
    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point
mod tests {
    use super::*;
    use crate::diffusion::target::TARGETS;

    #[test]
    fn min_snr_matches_the_paper_for_each_target() {
        let w = Weighting::MinSnr(5.0);
        assert_eq!(w.factor(Target::X0, 20.0), 5.0);
        assert_eq!(w.factor(Target::Eps, 20.0), 0.25);
        assert_eq!(w.factor(Target::V, 4.0), 4.0 / 5.0);
        assert_eq!(w.factor(Target::Eps, 2.0), 1.0, "below gamma, eps keeps its plain loss");
    }

    #[test]
    fn snr_weighting_on_eps_is_the_plain_eps_loss() {
        assert_eq!(Weighting::Snr.factor(Target::Eps, 123.5), 1.0);
    }

    #[test]
    fn constant_is_one_for_every_target() {
        for target in TARGETS {
            assert_eq!(Weighting::Constant.factor(target, 0.3), 1.0);
        }
        assert_eq!(Weighting::Constant.x0_weight(Target::V, 3.0), 4.0);
    }

    #[test]
    fn zero_snr_gives_factor_one_never_nan() {
        for w in [Weighting::Snr, Weighting::InvSnr, Weighting::MinSnr(5.0), Weighting::MaxSnr(1.0)] {
            for target in TARGETS {
                assert_eq!(w.factor(target, 0.0), 1.0, "{w} {target}");
            }
        }
    }

    #[test]
    fn soft_min_snr_tends_to_min_snr_at_the_extremes() {
        let w = Weighting::SoftMinSnr(5.0);
        assert!((w.x0_weight(Target::X0, 1e9) - 5.0).abs() < 1e-7);
        assert!((w.x0_weight(Target::X0, 1e-9) - 1e-9).abs() < 1e-16);
    }

    #[test]
    fn rejects_bad_gamma() {
        assert_eq!(
            Weighting::MinSnr(-1.0).validate().unwrap_err().to_string(),
            "weighting `min_snr` needs gamma > 0 and finite, got -1"
        );
        assert!(Weighting::SoftMinSnr(f64::NAN).validate().is_err());
        assert!(Weighting::InvSnr.validate().is_ok());
    }
}
