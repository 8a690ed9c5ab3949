//! The model as samplers call it: a [`Denoiser`] with its target, evaluated at one integer
//! timestep with classifier-free guidance (Ho & Salimans 2022, eq. 6, in the seed's form).
//!
//! Guidance follows the seed (`scripts_vit/sampler_edm.py`, `Net.forward`): the batch is
//! doubled with the same input, the second half labelled with the null class, and the
//! model OUTPUT is combined as `uncond + s * (cond - uncond)` (the seed does so on the eps
//! prediction of eps models and on `D = F` of x0 models; both are the model output). Where
//! guidance is off (`s = 1`, or `t` outside the interval) the net runs once, conditionally:
//! the seed then runs both halves but keeps the conditional one.

use tch::{Kind, Tensor};

use super::{SamplerConfig, SamplerError};
use crate::diffusion::models::Denoiser;
use crate::diffusion::target::Target;

/// A denoiser, its target and the guidance it is sampled with.
#[derive(Debug)]
pub struct GuidedModel<'a> {
    net: &'a dyn Denoiser,
    target: Target,
    cfg: SamplerConfig,
    net_kind: Kind,
}

impl<'a> GuidedModel<'a> {
    /// `net` predicting `target`, guided as `cfg` says, fed inputs in `net_kind` (its
    /// parameters' dtype; the sampler's state may be wider, as the seed's float64 state).
    ///
    /// # Errors
    /// [`SamplerError::GuidanceUnconditional`] when guidance is asked of an unconditional net.
    pub fn new(
        net: &'a dyn Denoiser,
        target: Target,
        cfg: &SamplerConfig,
        net_kind: Kind,
    ) -> Result<Self, SamplerError> {
        if (cfg.guidance - 1.0).abs() >= 1e-8 && net.null_label().is_none() {
            return Err(SamplerError::GuidanceUnconditional(cfg.guidance));
        }
        Ok(Self { net, target, cfg: cfg.clone(), net_kind })
    }

    /// What the net predicts.
    #[must_use]
    pub fn target(&self) -> Target {
        self.target
    }

    /// The model output (eps, x0 or v) at `x` `[B, ...]` and integer timestep `t` for labels
    /// `y` `[B]` (`None` for an unconditional net), guided where [`SamplerConfig::guided_at`]
    /// says; in `x`'s dtype.
    pub fn output(&self, x: &Tensor, t: i64, y: Option<&Tensor>) -> Tensor {
        let b = x.size()[0];
        let input = x.to_kind(self.net_kind);
        let out = match (self.net.null_label(), y) {
            (Some(null), Some(y)) if self.cfg.guided_at(t) => {
                let steps = Tensor::full([2 * b], t, (Kind::Int64, x.device()));
                let labels = Tensor::cat(&[y.shallow_clone(), y.full_like(null)], 0);
                let both = self.net.forward_t(&Tensor::cat(&[&input, &input], 0), &steps, Some(&labels), false);
                let (cond, uncond) = (both.narrow(0, 0, b), both.narrow(0, b, b));
                &uncond + (cond - &uncond) * self.cfg.guidance
            }
            _ => self.net.forward_t(&input, &Tensor::full([b], t, (Kind::Int64, x.device())), y, false),
        };
        out.to_kind(x.kind())
    }
}
