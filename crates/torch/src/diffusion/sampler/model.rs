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
use crate::stages::train::config::Precision;

/// A denoiser, its target and the guidance it is sampled with.
#[derive(Debug)]
pub struct GuidedModel<'a> {
    net: &'a dyn Denoiser,
    target: Target,
    cfg: SamplerConfig,
    net_kind: Kind,
    /// CUDA autocast around the net's forward passes: `Some(true)` bf16, `Some(false)` fp16.
    autocast: Option<bool>,
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
        Ok(Self { net, target, cfg: cfg.clone(), net_kind, autocast: None })
    }

    /// The same model with its forward passes under `precision`'s CUDA autocast (bf16 or
    /// fp16, as `with torch.autocast("cuda", dtype)` around the net; fp32: none). The outputs
    /// are cast back to the sampler's state dtype.
    #[must_use]
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.autocast = match precision {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(true),
            Precision::Fp16 => Some(false),
        };
        self
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
        let out = match self.autocast {
            Some(bf16) => crate::shim::autocast(bf16, || self.net_output(x, t, y)),
            None => self.net_output(x, t, y),
        };
        out.to_kind(x.kind())
    }

    fn net_output(&self, x: &Tensor, t: i64, y: Option<&Tensor>) -> Tensor {
        let b = x.size()[0];
        let input = x.to_kind(self.net_kind);
        match (self.net.null_label(), y) {
            (Some(null), Some(y)) if self.cfg.guided_at(t) => {
                let steps = Tensor::full([2 * b], t, (Kind::Int64, x.device()));
                let labels = Tensor::cat(&[y.shallow_clone(), y.full_like(null)], 0);
                let both = self.net.forward_t(&Tensor::cat(&[&input, &input], 0), &steps, Some(&labels), false);
                let (cond, uncond) = (both.narrow(0, 0, b), both.narrow(0, b, b));
                &uncond + (cond - &uncond) * self.cfg.guidance
            }
            _ => self.net.forward_t(&input, &Tensor::full([b], t, (Kind::Int64, x.device())), y, false),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use tch::Device;

    use super::*;

    /// A fake conditional net (10 classes, null label 10) whose output is its label plus
    /// `t / 1000` everywhere; it records each call's batch size and timestep.
    #[derive(Debug, Default)]
    pub(crate) struct LabelNet {
        pub(crate) calls: Mutex<Vec<(i64, i64)>>,
    }

    impl Denoiser for LabelNet {
        fn forward_t(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, _: bool) -> Tensor {
            let t0 = t.int64_value(&[0]);
            self.calls.lock().unwrap().push((x.size()[0], t0));
            let y =
                y.map_or_else(|| Tensor::full([x.size()[0]], 10, (Kind::Int64, Device::Cpu)), Tensor::shallow_clone);
            let value = y.to_kind(x.kind()) + t.to_kind(x.kind()) / 1000.0;
            x.zeros_like() + value.reshape([-1, 1, 1, 1])
        }

        fn null_label(&self) -> Option<i64> {
            Some(10)
        }
    }

    #[test]
    fn guidance_combines_conditional_and_null_outputs() {
        let net = LabelNet::default();
        let cfg = SamplerConfig { guidance: 1.5, guidance_interval: Some((100, 200)), ..SamplerConfig::default() };
        let model = GuidedModel::new(&net, Target::Eps, &cfg, Kind::Float).unwrap();
        let x = Tensor::zeros([2, 1, 2, 2], (Kind::Double, Device::Cpu));
        let y = Tensor::from_slice(&[3i64, 7]);
        let inside = model.output(&x, 150, Some(&y));
        assert_eq!(inside.kind(), Kind::Double, "back in the state's dtype");
        // uncond + s (cond - uncond) = 10.15 + 1.5 (c + 0.15 - 10.15)
        let want = [10.15 + 1.5 * (3.0 - 10.0), 10.15 + 1.5 * (7.0 - 10.0)];
        for (row, w) in want.iter().enumerate() {
            assert!((inside.double_value(&[i64::try_from(row).unwrap(), 0, 1, 1]) - w).abs() < 1e-5);
        }
        let outside = model.output(&x, 201, Some(&y));
        assert!((outside.double_value(&[1, 0, 0, 0]) - 7.201).abs() < 1e-5, "conditional only");
        assert_eq!(*net.calls.lock().unwrap(), [(4, 150), (2, 201)], "doubled batch where guided, once elsewhere");
    }

    #[test]
    fn guidance_needs_a_conditional_net() {
        #[derive(Debug)]
        struct Unconditional;
        impl Denoiser for Unconditional {
            fn forward_t(&self, x: &Tensor, _: &Tensor, _: Option<&Tensor>, _: bool) -> Tensor {
                x.shallow_clone()
            }
            fn null_label(&self) -> Option<i64> {
                None
            }
        }
        let cfg = SamplerConfig { guidance: 2.0, ..SamplerConfig::default() };
        let err = GuidedModel::new(&Unconditional, Target::X0, &cfg, Kind::Float).unwrap_err();
        assert_eq!(err, SamplerError::GuidanceUnconditional(2.0));
        assert!(GuidedModel::new(&Unconditional, Target::X0, &SamplerConfig::default(), Kind::Float).is_ok());
    }
}
