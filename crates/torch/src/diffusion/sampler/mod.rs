//! Sampling from a trained denoiser: EDM's Heun and Euler on the model's discrete noise
//! levels (as the seed paper samples), DDIM and DDPM ancestral, all with classifier-free
//! guidance, for eps, x0 and v models.
//!
//! - [`SamplerConfig`]: every sampler parameter, with defaults;
//! - [`Sampler`]: one implementation per file: [`heun`], [`euler`] (both on [`grid`]),
//!   [`ddim`], [`ddpm`] (both on [`discrete`]); [`build`] picks one;
//! - [`GuidedModel`] ([`model`]): the net, its target and classifier-free guidance;
//! - [`noise`]: per-step noise, fixed or from per-image generators;
//! - [`draw`]: images for indices `[start, end)`, sample `i` depending only on `(seed, i)`,
//!   as `u8` images the way torchvision's `save_image` writes them.

pub mod ddim;
pub mod ddpm;
pub mod discrete;
pub mod draw;
pub mod euler;
pub mod grid;
pub mod heun;
pub mod model;
pub mod noise;

use std::fmt;
use std::str::FromStr;

use tch::Tensor;

pub use self::draw::{draw, draw_decoded, to_u8, DrawConfig, Drawn, Labels};
pub use self::model::GuidedModel;
pub use self::noise::{FixedNoise, ImageNoise, StepNoise};
use super::schedule::Schedule;
use super::target::Target;

/// The sampling methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SamplerKind {
    /// EDM's 2nd-order Heun on the model's discrete sigmas, last step Euler (the seed's sampler).
    #[default]
    Heun,
    /// EDM's Euler on the same grid.
    Euler,
    /// DDIM (Song et al. 2021), `eta` from deterministic (0) to DDPM-like (1).
    Ddim,
    /// DDPM ancestral sampling (Ho et al. 2020), fixed small variance.
    Ddpm,
}

/// All samplers, in a fixed order (for names and messages).
pub const SAMPLERS: [SamplerKind; 4] = [SamplerKind::Heun, SamplerKind::Euler, SamplerKind::Ddim, SamplerKind::Ddpm];

impl SamplerKind {
    /// The name used in pipelines: `heun`, `euler`, `ddim` or `ddpm`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Heun => "heun",
            Self::Euler => "euler",
            Self::Ddim => "ddim",
            Self::Ddpm => "ddpm",
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = SamplerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SAMPLERS.into_iter().find(|s| s.name() == name).ok_or_else(|| SamplerError::UnknownSampler(name.to_owned()))
    }
}

/// Every sampler parameter. Fields a sampler does not use are ignored by it.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Which sampler (default `heun`, the seed's).
    pub kind: SamplerKind,
    /// Number of steps `N` (heun: `2N - 1` model evaluations; ddim/ddpm: at most `T`). Default 18.
    pub steps: usize,
    /// DDIM's `eta` in `[0, 1]`: 0 is deterministic DDIM, 1 the DDPM posterior variance. Default 0.
    pub eta: f64,
    /// Clip the x0 prediction to `[-1, 1]` in ddim and ddpm (guided-diffusion's `clip_denoised`). Default off.
    pub clip_x0: bool,
    /// Classifier-free guidance scale `s` (1 = off): `uncond + s * (cond - uncond)`. Default 1.
    pub guidance: f64,
    /// Integer timesteps `[t_from, t_to]` (inclusive) where guidance applies; `None`: everywhere.
    pub guidance_interval: Option<(i64, i64)>,
    /// Smallest EDM noise level (heun/euler), raised to the model's smallest sigma. Default 0.002.
    pub sigma_min: f64,
    /// Largest EDM noise level (heun/euler), lowered to the model's largest sigma. Default 80.
    pub sigma_max: f64,
    /// EDM's time-step exponent `rho` (heun/euler). Default 7.
    pub rho: f64,
    /// Floor `C_1` of the `abar` ratios in the model's sigma grid (heun/euler). Default 0.001.
    pub c1: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            kind: SamplerKind::Heun,
            steps: 18,
            eta: 0.0,
            clip_x0: false,
            guidance: 1.0,
            guidance_interval: None,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            c1: 0.001,
        }
    }
}

/// Why sampling cannot start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    /// A name that is not a sampler.
    #[error("unknown sampler `{0}` (expected one of: heun, euler, ddim, ddpm)")]
    UnknownSampler(String),
    /// A parameter out of its range.
    #[error("sampler parameter `{param}`: {reason}")]
    Param {
        /// The parameter's name.
        param: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// Guidance needs a class-conditional net (one with a null label).
    #[error(
        "sampler parameter `guidance`: {0} needs a class-conditional model with a null label, and this one has none \
         (unconditional, or a ViT with `null_class = false`)"
    )]
    GuidanceUnconditional(f64),
    /// A given class label outside `0 .. classes`.
    #[error("sampler parameter `labels`: label {label} at position {position} is outside 0..{classes}")]
    Label {
        /// Its position in the given list.
        position: usize,
        /// The label.
        label: i64,
        /// The number of classes.
        classes: i64,
    },
}

impl SamplerError {
    fn param(param: &'static str, reason: impl Into<String>) -> Self {
        Self::Param { param, reason: reason.into() }
    }
}

impl SamplerConfig {
    /// Checks every parameter against the sampler and a schedule of `t_steps` steps.
    ///
    /// # Errors
    /// [`SamplerError::Param`] naming the first parameter out of range.
    pub fn validate(&self, t_steps: usize) -> Result<(), SamplerError> {
        let karras = matches!(self.kind, SamplerKind::Heun | SamplerKind::Euler);
        if self.steps == 0 || (karras && self.steps < 2) {
            let least = if karras { 2 } else { 1 };
            return Err(SamplerError::param(
                "steps",
                format!("{} needs at least {least}, got {}", self.kind, self.steps),
            ));
        }
        if !karras && self.steps > t_steps {
            return Err(SamplerError::param("steps", format!("{} > the schedule's {t_steps} steps", self.steps)));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(SamplerError::param("eta", format!("{} is outside [0, 1]", self.eta)));
        }
        if !self.guidance.is_finite() {
            return Err(SamplerError::param("guidance", format!("{} is not finite", self.guidance)));
        }
        if let Some((from, to)) = self.guidance_interval {
            if from < 0 || to < from {
                return Err(SamplerError::param("t_from", format!("[{from}, {to}] is not an interval of timesteps")));
            }
        }
        self.validate_grid()
    }

    fn validate_grid(&self) -> Result<(), SamplerError> {
        if !(self.sigma_min > 0.0 && self.sigma_min < self.sigma_max && self.sigma_max.is_finite()) {
            let reason = format!("need 0 < sigma_min < sigma_max < inf, got {} and {}", self.sigma_min, self.sigma_max);
            return Err(SamplerError::param("sigma_min", reason));
        }
        if !(self.rho > 0.0 && self.rho.is_finite()) {
            return Err(SamplerError::param("rho", format!("{} is not a positive number", self.rho)));
        }
        if !(self.c1 > 0.0 && self.c1 <= 1.0) {
            return Err(SamplerError::param("c1", format!("{} is outside (0, 1]", self.c1)));
        }
        Ok(())
    }

    /// Whether guidance is on at integer timestep `t`: `s != 1` (the seed's `float_equal`,
    /// 1e-8) and `t` inside the interval, when there is one.
    #[must_use]
    pub fn guided_at(&self, t: i64) -> bool {
        (self.guidance - 1.0).abs() >= 1e-8 && self.guidance_interval.is_none_or(|(from, to)| from <= t && t <= to)
    }
}

/// A sampling method: from initial noise to samples, calling a [`GuidedModel`].
pub trait Sampler: Send + Sync + fmt::Debug {
    /// Model evaluations per sample (a guided evaluation, on a doubled batch, counts once).
    fn nfe(&self) -> usize;

    /// The integer timesteps at which the model is called, in order, once each.
    fn timesteps(&self) -> Vec<i64>;

    /// Samples from standard normal noise `z` `[B, C, H, W]` and labels `y` `[B]`; the state
    /// is kept in `z`'s dtype. `noise.step(k)` is asked for step `k`'s noise when one is needed
    /// (ddpm, ddim with `eta > 0`). Call inside `tch::no_grad`.
    fn sample(&self, model: &GuidedModel, z: &Tensor, y: Option<&Tensor>, noise: &mut dyn StepNoise) -> Tensor;
}

/// The sampler `cfg` asks for, on `schedule`.
///
/// # Errors
/// [`SamplerError::Param`] when a parameter is out of range ([`SamplerConfig::validate`]).
pub fn build(cfg: &SamplerConfig, schedule: &Schedule) -> Result<Box<dyn Sampler>, SamplerError> {
    cfg.validate(schedule.steps())?;
    Ok(match cfg.kind {
        SamplerKind::Heun => Box::new(heun::Heun::new(cfg, schedule)),
        SamplerKind::Euler => Box::new(euler::Euler::new(cfg, schedule)),
        SamplerKind::Ddim => Box::new(ddim::Ddim::new(cfg, schedule)),
        SamplerKind::Ddpm => Box::new(ddpm::Ddpm::new(cfg, schedule)),
    })
}

/// An integer timestep as the nets take it (schedules stay far below 2^63 steps).
#[allow(clippy::cast_possible_wrap)]
pub(crate) fn timestep(t: usize) -> i64 {
    t as i64
}

/// The `x0` and `eps` a prediction `f` implies at `x_t` with `abar = abar_t`, as diffusers'
/// `DDIMScheduler.step` writes them (DDIM paper eq. 9 for eps; Salimans & Ho 2022 sec. 4
/// and appendix D for v): eps: `x0 = (x - sqrt(1 - abar) f) / sqrt(abar)`; x0: `eps = (x -
/// sqrt(abar) x0) / sqrt(1 - abar)`; v: `x0 = sqrt(abar) x - sqrt(1 - abar) v`,
/// `eps = sqrt(abar) v + sqrt(1 - abar) x`. With `clip`, x0 is clamped to `[-1, 1]` and eps
/// recomputed from it (guided-diffusion's `ddim_sample`; diffusers' `use_clipped_model_output`).
pub(crate) fn x0_and_eps(target: Target, f: &Tensor, x: &Tensor, abar: f64, clip: bool) -> (Tensor, Tensor) {
    let (a, b) = (abar.sqrt(), (1.0 - abar).sqrt());
    let (x0, eps) = match target {
        Target::Eps => ((x - f * b) / a, f.shallow_clone()),
        Target::X0 => (f.shallow_clone(), (x - f * a) / b),
        Target::V => (x * a - f * b, f * a + x * b),
    };
    if clip {
        let x0 = x0.clamp(-1.0, 1.0);
        let eps = (x - &x0 * a) / b;
        return (x0, eps);
    }
    (x0, eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sampler_names() {
        assert_eq!("ddim".parse::<SamplerKind>(), Ok(SamplerKind::Ddim));
        assert_eq!(SamplerKind::default().to_string(), "heun");
        assert_eq!(
            "dpm".parse::<SamplerKind>().unwrap_err().to_string(),
            "unknown sampler `dpm` (expected one of: heun, euler, ddim, ddpm)"
        );
    }

    #[test]
    fn validation_names_the_parameter() {
        let param = |cfg: SamplerConfig| match cfg.validate(1000) {
            Err(SamplerError::Param { param, .. }) => param,
            other => panic!("expected a parameter error, got {other:?}"),
        };
        assert!(SamplerConfig::default().validate(1000).is_ok());
        assert_eq!(param(SamplerConfig { steps: 1, ..SamplerConfig::default() }), "steps");
        let ddpm = SamplerConfig { kind: SamplerKind::Ddpm, steps: 1, ..SamplerConfig::default() };
        assert!(ddpm.validate(1000).is_ok());
        assert_eq!(param(SamplerConfig { steps: 1001, ..ddpm.clone() }), "steps");
        assert_eq!(param(SamplerConfig { eta: 1.5, ..SamplerConfig::default() }), "eta");
        assert_eq!(param(SamplerConfig { guidance: f64::NAN, ..SamplerConfig::default() }), "guidance");
        assert_eq!(param(SamplerConfig { guidance_interval: Some((5, 2)), ..SamplerConfig::default() }), "t_from");
        assert_eq!(param(SamplerConfig { sigma_min: 100.0, ..SamplerConfig::default() }), "sigma_min");
        assert_eq!(param(SamplerConfig { rho: 0.0, ..SamplerConfig::default() }), "rho");
        assert_eq!(param(SamplerConfig { c1: 0.0, ..SamplerConfig::default() }), "c1");
    }

    #[test]
    fn guidance_applies_inside_its_interval_only() {
        let cfg = SamplerConfig { guidance: 2.1, guidance_interval: Some((0, 800)), ..SamplerConfig::default() };
        assert!(cfg.guided_at(0) && cfg.guided_at(800) && !cfg.guided_at(801));
        assert!(!SamplerConfig::default().guided_at(500), "s = 1 is off");
        assert!(SamplerConfig { guidance: 0.0, ..SamplerConfig::default() }.guided_at(3), "s = 0: unconditional");
    }
}
