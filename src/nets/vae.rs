//! Stable Diffusion's VAE: the hyper-parameters of diffusers' `AutoencoderKL`
//! (`models/autoencoders/autoencoder_kl.py`) as the language's `vae { .. }` value, read
//! and validated without libtorch so `msnr check` can match a latent dataset against
//! its net and a latent model against its decoder. The stdlib declares the defaults
//! (`stdlib/data.msnr`, diffusers' values for SD: `stabilityai/sd-vae-ft-mse`).

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::rules::positive;
use crate::stages::params::{ParamError, Positive, Reader};

/// Hyper-parameters of an `AutoencoderKL` with `DownEncoderBlock2D` / `UpDecoderBlock2D`
/// blocks, SiLU, mid-block attention and both quant convolutions (diffusers' defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Image channels in and out (`in_channels` = `out_channels`; 3 for SD).
    pub image_channels: i64,
    /// Output channels of each encoder block (`block_out_channels`); all but the last
    /// block halve the side, so the spatial factor is `2^(len - 1)`.
    pub block_out_channels: Vec<i64>,
    /// Residual blocks per encoder block (`layers_per_block`; the decoder has one more).
    pub layers_per_block: i64,
    /// Latent channels (`latent_channels`).
    pub latent_channels: i64,
    /// Groups of every `GroupNorm` (`norm_num_groups`).
    pub norm_num_groups: i64,
    /// Latents are multiplied by it for training and divided by it before decoding
    /// (`scaling_factor`; 0.18215 for SD, DESIGN section 4).
    pub scaling_factor: f64,
}

impl Default for VaeConfig {
    /// Stable Diffusion's VAE (`stabilityai/sd-vae-ft-mse`'s `config.json`).
    fn default() -> Self {
        Self {
            image_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
        }
    }
}

impl VaeConfig {
    /// Reads parameter `name` (a `vae { .. }` value); call [`VaeConfig::validate`] after.
    pub fn read(r: &mut Reader<'_>, name: &'static str) -> Option<Self> {
        let c = r.ctor(name)?;
        if c.name != "vae" {
            return r.fail(ParamError::new(name, format!("unknown autoencoder `{}`", c.name)));
        }
        let blocks = r.arg_ints(c, "block_out_channels");
        let layers = r.arg_int(c, "layers_per_block", 1..);
        let latent = r.arg_int(c, "latent_channels", 1..);
        let groups = r.arg_int(c, "norm_groups", 1..);
        let scale = r.arg_float(c, "scaling_factor", Positive);
        let config = Self {
            image_channels: 3,
            block_out_channels: blocks?,
            layers_per_block: layers?,
            latent_channels: latent?,
            norm_num_groups: groups?,
            scaling_factor: scale?,
        };
        match config.validate() {
            Ok(()) => Some(config),
            Err(e) => {
                let (param, message) = e.into_param();
                r.fail(ParamError::new(param.replacen("vae.", &format!("{name}."), 1), message))
            }
        }
    }

    /// The side of an image over the side of its latent: `2^(blocks - 1)`.
    #[must_use]
    pub fn factor(&self) -> i64 {
        1 << (self.block_out_channels.len().saturating_sub(1)).min(30)
    }

    /// Checks that the autoencoder can be built.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the `vae.*` parameter at fault.
    pub fn validate(&self) -> Result<(), ModelError> {
        positive("vae.layers_per_block", self.layers_per_block)?;
        positive("vae.latent_channels", self.latent_channels)?;
        positive("vae.norm_groups", self.norm_num_groups)?;
        if self.block_out_channels.is_empty() || self.block_out_channels.len() > 8 {
            return Err(ModelError::invalid("vae.block_out_channels", "give 1 to 8 block widths"));
        }
        let groups = self.norm_num_groups;
        if let Some(bad) = self.block_out_channels.iter().find(|&&c| c < 1 || c % groups != 0) {
            let message = format!("every width must be a positive multiple of norm_groups = {groups}, found {bad}");
            return Err(ModelError::invalid("vae.block_out_channels", message));
        }
        Ok(())
    }

    /// Checks that images of `channels` and `size` (height, width), as far as known,
    /// can be encoded.
    ///
    /// # Errors
    /// A message saying which fact does not fit.
    pub fn check_images(&self, channels: Option<u32>, size: Option<(u32, u32)>) -> Result<(), String> {
        if let Some(c) = channels.filter(|&c| i64::from(c) != self.image_channels) {
            return Err(format!("the VAE encodes {}-channel images, found {c} channels", self.image_channels));
        }
        let f = self.factor();
        match size {
            Some((h, w)) if i64::from(h) % f != 0 || i64::from(w) % f != 0 => {
                Err(format!("the image side must be a multiple of {f} (the VAE's factor), found {h}x{w}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_defaults_have_factor_8() {
        let sd = VaeConfig::default();
        assert_eq!(sd.factor(), 8);
        assert_eq!(sd.validate(), Ok(()));
        assert_eq!(sd.check_images(Some(3), Some((256, 256))), Ok(()));
        assert_eq!(sd.check_images(None, None), Ok(()));
        assert!(sd.check_images(Some(3), Some((60, 64))).unwrap_err().contains("multiple of 8"));
        assert!(sd.check_images(Some(1), None).unwrap_err().contains("3-channel"));
    }

    #[test]
    fn widths_must_fit_the_groups() {
        let c = VaeConfig { block_out_channels: vec![32, 48], ..VaeConfig::default() };
        assert_eq!(c.validate().unwrap_err().into_param().0, "vae.block_out_channels");
        let small = VaeConfig { block_out_channels: vec![32, 64], norm_num_groups: 8, ..VaeConfig::default() };
        assert_eq!((small.validate(), small.factor()), (Ok(()), 2));
    }
}
