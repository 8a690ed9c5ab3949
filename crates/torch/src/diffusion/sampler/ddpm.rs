//! DDPM ancestral sampling (Ho, Jain & Abbeel 2020, eq. 6-7 posterior, Algorithm 2) with
//! the fixed small variance, on a respaced schedule, as guided-diffusion's `p_sample` on a
//! `SpacedDiffusion` and diffusers' `DDPMScheduler.step` (variance `fixed_small`) compute it.
//! Between kept timesteps `t` and `prev` (`abar_prev = 1` after the last):
//! `beta = 1 - abar_t / abar_prev`, posterior mean `sqrt(abar_prev) beta / (1 - abar_t) x0 +
//! sqrt(1 - beta) (1 - abar_prev) / (1 - abar_t) x_t`, variance `(1 - abar_prev) / (1 - abar_t)
//! beta` (floored at 1e-20 as diffusers), noise added while `t > 0`.
//!
//! Timesteps: guided-diffusion's `space_timesteps(T, [N])`: `round(k (T-1)/(N-1))`, the
//! stride accumulated in float64 and rounded half to even as Python's `round`; all of
//! `0..T` when `N = T`.

use tch::Tensor;

use super::discrete::Walk;
use super::{GuidedModel, Sampler, SamplerConfig, StepNoise};
use crate::diffusion::schedule::Schedule;

/// Ancestral DDPM, optional x0 clipping.
#[derive(Debug, Clone, PartialEq)]
pub struct Ddpm {
    walk: Walk,
    clip: bool,
}

impl Ddpm {
    /// DDPM with `cfg.steps` steps (at most `T`) and `cfg.clip_x0` on `schedule`.
    #[must_use]
    pub fn new(cfg: &SamplerConfig, schedule: &Schedule) -> Self {
        let mut timesteps = space_timesteps(schedule.steps(), cfg.steps);
        timesteps.reverse();
        Self { walk: Walk::new(timesteps, schedule), clip: cfg.clip_x0 }
    }
}

impl Sampler for Ddpm {
    fn nfe(&self) -> usize {
        self.walk.nfe()
    }

    fn timesteps(&self) -> Vec<i64> {
        self.walk.timesteps()
    }

    fn sample(&self, model: &GuidedModel, z: &Tensor, y: Option<&Tensor>, noise: &mut dyn StepNoise) -> Tensor {
        self.walk.run(model, z, y, self.clip, |s, x, x0, _| {
            let (a, a_prev) = (s.abar, s.abar_prev);
            let (alpha, beta) = (a / a_prev, 1.0 - a / a_prev);
            let mut next = x0 * (a_prev.sqrt() * beta / (1.0 - a)) + x * (alpha.sqrt() * (1.0 - a_prev) / (1.0 - a));
            if s.t > 0 {
                let variance = ((1.0 - a_prev) / (1.0 - a) * beta).max(1e-20);
                next += noise.step(s.k, &next) * variance.sqrt();
            }
            next
        })
    }
}

/// guided-diffusion respace.py `space_timesteps(num_timesteps, [count])`, ascending.
#[must_use]
pub fn space_timesteps(num_timesteps: usize, count: usize) -> Vec<usize> {
    let stride = if count <= 1 { 1.0 } else { real(num_timesteps - 1) / real(count - 1) };
    let mut taken = Vec::with_capacity(count);
    let mut cur = 0.0_f64;
    for _ in 0..count {
        taken.push(whole(cur.round_ties_even()));
        cur += stride;
    }
    taken.sort_unstable();
    taken.dedup();
    taken
}

/// A count as `f64` (exact below 2^52).
#[allow(clippy::cast_precision_loss)]
fn real(n: usize) -> f64 {
    n as f64
}

/// A rounded, non-negative `f64` below 2^52 as `usize`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(x: f64) -> usize {
    x as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_like_guided_diffusion() {
        assert_eq!(space_timesteps(1000, 1), vec![0]);
        assert_eq!(space_timesteps(1000, 2), vec![0, 999]);
        assert_eq!(space_timesteps(1000, 3), vec![0, 500, 999], "499.5 rounds half to even");
        assert_eq!(space_timesteps(10, 10), (0..10).collect::<Vec<_>>());
        let s = space_timesteps(1000, 13);
        assert_eq!((s.len(), s[1], s[12]), (13, 83, 999));
    }
}
