//! Stable Diffusion's VAE: diffusers' `AutoencoderKL` (`models/autoencoders/autoencoder_kl.py`)
//! with its `Encoder`/`Decoder` ([`coder`]), blocks ([`blocks`]) and mid-block
//! [`attention`], under diffusers' parameter names, so `stabilityai/sd-vae-ft-mse`'s
//! `diffusion_pytorch_model.safetensors` loads as it is ([`AutoencoderKL::load`]).
//! The configuration (`msnr::nets::VaeConfig`) comes from the language.

pub mod attention;
pub mod blocks;
pub mod coder;

use std::collections::HashMap;
use std::path::Path;

use tch::nn::{self, Module, VarStore};
use tch::{Device, Tensor};

use self::coder::{Decoder, Encoder};
use super::layers::conv2d;
use super::weights::load_state_dict;
use msnr::nets::{ModelError, VaeConfig};

/// The posterior `DiagonalGaussianDistribution` of a batch of images.
#[derive(Debug)]
pub struct Posterior {
    /// `mean` `[b, latent, h, w]`.
    pub mean: Tensor,
    /// `std = exp(0.5 * clamp(logvar, -30, 20))`.
    pub std: Tensor,
}

impl Posterior {
    /// `mean + std * noise` (`DiagonalGaussianDistribution.sample`, the noise given).
    pub fn sample(&self, noise: &Tensor) -> Tensor {
        &self.mean + &self.std * noise
    }
}

/// diffusers' `AutoencoderKL` (with `quant_conv` and `post_quant_conv`).
#[derive(Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: nn::Conv2D,
    post_quant_conv: nn::Conv2D,
    /// Its configuration.
    pub config: VaeConfig,
}

impl AutoencoderKL {
    /// Builds it under `vs` (the root: keys `encoder.*`, `quant_conv.*`, ...). The
    /// configuration must be valid ([`VaeConfig::validate`]).
    #[must_use]
    pub fn new(vs: &nn::Path, config: &VaeConfig) -> Self {
        let latent = config.latent_channels;
        Self {
            encoder: Encoder::new(&(vs / "encoder"), config),
            decoder: Decoder::new(&(vs / "decoder"), config),
            quant_conv: conv2d(&(vs / "quant_conv"), 2 * latent, 2 * latent, 1, 1),
            post_quant_conv: conv2d(&(vs / "post_quant_conv"), latent, latent, 1, 1),
            config: config.clone(),
        }
    }

    /// Builds it on `device` in float32 and loads `path` (safetensors, diffusers layout,
    /// old attention names accepted) strictly. Returns the store that holds the weights.
    ///
    /// # Errors
    /// An invalid configuration, an unreadable file, or weights that do not match the
    /// configuration (every missing, unexpected or misshapen tensor listed).
    pub fn load(path: &Path, config: &VaeConfig, device: Device) -> Result<(VarStore, Self), ModelError> {
        config.validate()?;
        let read = |e: tch::TchError| ModelError::Read { path: path.to_path_buf(), message: e.to_string() };
        let tensors = Tensor::read_safetensors(path).map_err(read)?;
        let file: HashMap<String, Tensor> = tensors.into_iter().map(|(k, t)| renamed(k, t)).collect();
        let vs = VarStore::new(device);
        let vae = Self::new(&vs.root(), config);
        load_state_dict(&vs, &file, path)?;
        Ok((vs, vae))
    }

    /// The posterior of images `x` `[b, 3, h, w]` in [-1, 1] (`AutoencoderKL.encode`).
    #[must_use]
    pub fn encode(&self, x: &Tensor) -> Posterior {
        let moments = self.quant_conv.forward(&self.encoder.forward(&channels_last(x)));
        let parts = moments.chunk(2, 1);
        let logvar = parts[1].clamp(-30.0, 20.0);
        Posterior { mean: parts[0].contiguous(), std: (logvar * 0.5).exp().contiguous() }
    }

    /// Images `[b, 3, f h, f w]` (about [-1, 1]) of latents `z` (unscaled; `AutoencoderKL.decode`).
    pub fn decode(&self, z: &Tensor) -> Tensor {
        self.decoder.forward(&self.post_quant_conv.forward(&channels_last(z))).contiguous()
    }
}

/// `x` with channels-last (NHWC) strides, the same values: the convolutions and group
/// norms then keep that layout, faster on the CPU (as in `inception`).
fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A checkpoint key and tensor under today's names: diffusers' older attention
/// names (`query`, `key`, `value`, `proj_attn`; `_convert_deprecated_attention_blocks`)
/// become `to_q`, `to_k`, `to_v`, `to_out.0`, and 1x1-conv attention weights
/// `[c, c, 1, 1]` (the original SD layout) become linear `[c, c]`.
fn renamed(key: String, tensor: Tensor) -> (String, Tensor) {
    const OLD: [(&str, &str); 4] =
        [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")];
    if !key.contains(".attentions.") {
        return (key, tensor);
    }
    let key = OLD.iter().fold(key, |k, (old, new)| k.replace(old, new));
    let tensor = if tensor.dim() == 4 { tensor.flatten(1, -1) } else { tensor };
    (key, tensor)
}

#[cfg(test)]
mod tests {
    use tch::Kind;

    use super::*;

    fn small() -> VaeConfig {
        VaeConfig { block_out_channels: vec![32, 64], layers_per_block: 1, norm_num_groups: 8, ..VaeConfig::default() }
    }

    #[test]
    fn shapes_follow_the_factor() {
        let vs = VarStore::new(Device::Cpu);
        let vae = AutoencoderKL::new(&vs.root(), &small());
        let x = Tensor::rand([2, 3, 16, 12], (Kind::Float, Device::Cpu));
        let posterior = tch::no_grad(|| vae.encode(&x));
        assert_eq!(posterior.mean.size(), [2, 4, 8, 6]);
        assert_eq!(tch::no_grad(|| vae.decode(&posterior.mean)).size(), [2, 3, 16, 12]);
    }

    #[test]
    fn old_attention_names_are_renamed() {
        let t = Tensor::zeros([8, 8, 1, 1], (Kind::Float, Device::Cpu));
        let (key, t) = renamed("encoder.mid_block.attentions.0.proj_attn.weight".into(), t);
        assert_eq!((key.as_str(), t.size()), ("encoder.mid_block.attentions.0.to_out.0.weight", vec![8, 8]));
        let (key, _) =
            renamed("decoder.up_blocks.0.resnets.0.conv1.weight".into(), Tensor::zeros([1], tch::kind::FLOAT_CPU));
        assert_eq!(key, "decoder.up_blocks.0.resnets.0.conv1.weight");
    }
}
