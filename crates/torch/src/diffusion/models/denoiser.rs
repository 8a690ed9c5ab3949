//! The interface the training and sampling stages use: a denoiser network behind a
//! trait object, built from a resolved [`NetSpec`].

use std::borrow::Borrow;

use tch::nn;
use tch::Tensor;

use super::unet::UNet;
use super::vit::ViT;
use msnr::nets::ModelError;
use msnr::nets::NetSpec;

/// A network that maps noisy images, timesteps and labels to its prediction
/// (eps, x0 or v, whichever target it is trained on).
pub trait Denoiser: Send + std::fmt::Debug {
    /// `x` `[batch, channels, size, size]`, integer timesteps `t` `[batch]` in `0..T`,
    /// labels `y` `[batch]` in `0..=num_classes` (`num_classes` is the null label; `None`
    /// means the null label; unconditional nets ignore `y`). Dropout is active when `train`.
    /// Returns a tensor shaped like `x`.
    fn forward_t(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor;

    /// The label meaning "no class" (classifier-free guidance and label dropout), or
    /// `None` for an unconditional net or one without the null label's row.
    fn null_label(&self) -> Option<i64>;

    /// Number of classes it is conditioned on; 0 when unconditional. By default the null
    /// label's value (the null label is `num_classes`).
    fn num_classes(&self) -> i64 {
        self.null_label().unwrap_or(0)
    }
}

impl Denoiser for ViT {
    /// The seed ViT has no dropout: `train` changes nothing.
    fn forward_t(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, _train: bool) -> Tensor {
        self.forward(x, t, y)
    }

    fn null_label(&self) -> Option<i64> {
        self.config().null_label()
    }

    fn num_classes(&self) -> i64 {
        self.config().num_classes
    }
}

impl Denoiser for UNet {
    fn forward_t(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        UNet::forward_t(self, x, t, y, train)
    }

    fn null_label(&self) -> Option<i64> {
        let n = self.config().num_classes;
        (n > 0).then_some(n)
    }

    fn num_classes(&self) -> i64 {
        self.config().num_classes
    }
}

/// Validates `spec` and builds its network under `vs`, initialized as its reference.
///
/// # Errors
/// [`ModelError::Invalid`] naming the parameter when the network cannot be built.
pub fn build<'a>(vs: impl Borrow<nn::Path<'a>>, spec: &NetSpec) -> Result<Box<dyn Denoiser>, ModelError> {
    spec.validate()?;
    Ok(match spec {
        NetSpec::ViT(cfg) => Box::new(ViT::new(vs.borrow(), cfg.clone())),
        NetSpec::UNet(cfg) => Box::new(UNet::new(vs.borrow(), cfg.clone())),
    })
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;
    use crate::diffusion::models::{UNetConfig, ViTConfig};

    #[test]
    fn builds_either_network() {
        let vs = nn::VarStore::new(Device::Cpu);
        let vit = build(vs.root() / "a", &NetSpec::ViT(ViTConfig::tiny())).unwrap();
        let x = Tensor::randn([2, 4, 8, 8], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[1i64, 2]);
        assert_eq!(vit.forward_t(&x, &t, None, true).size(), [2, 4, 8, 8]);
        assert_eq!(vit.null_label(), Some(10));
        let unet = build(vs.root() / "b", &NetSpec::UNet(UNetConfig { num_classes: 0, ..UNetConfig::tiny() })).unwrap();
        assert_eq!(unet.null_label(), None);
    }

    #[test]
    fn rejects_an_invalid_spec_before_building() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = NetSpec::ViT(ViTConfig { patch: 3, ..ViTConfig::tiny() });
        assert_eq!(build(vs.root(), &spec).unwrap_err().into_param().0, "net.patch");
        assert!(vs.variables().is_empty());
    }
}
