//! The `vae_encode` kind's parameters (`stdlib/data.msnr`): a dataset of images becomes
//! a dataset of float32 latents through Stable Diffusion's VAE encoder (diffusers'
//! `AutoencoderKL`, configured by a `vae { .. }` value), times its scaling factor, labels
//! kept. The encoder runs in the worker (`msnr_torch::stages::vae_encode`).

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{ParamError, Reader, Shape, Source};
use crate::nets::VaeConfig;

/// Which latent each image gets from its posterior `N(mean, std^2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosteriorChoice {
    /// The posterior mean (deterministic).
    Mean,
    /// `mean + std * noise`, item `i`'s noise depending only on `(seed, i)`.
    Draw {
        /// The noise's seed.
        seed: u64,
    },
}

/// The `vae_encode` kind's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeEncodeParams {
    /// The images to encode.
    pub images: Source,
    /// The VAE weights (a safetensors file, or a folder holding
    /// `diffusion_pytorch_model.safetensors`).
    pub vae: Source,
    /// The VAE's architecture and scaling factor.
    pub config: VaeConfig,
    /// Mean or a seeded draw.
    pub posterior: PosteriorChoice,
    /// Also encode each image flipped horizontally (stored after all unflipped items).
    pub flip: bool,
    /// Images per batch (>= 1).
    pub batch: u64,
}

impl KindParams for VaeEncodeParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let images = r.source("images");
        let vae = r.source("vae");
        let config = VaeConfig::read(r, "config");
        let posterior = read_posterior(r);
        let flip = r.bool("flip");
        let batch = r.int("batch", 1..);
        if let Some(config) = &config {
            check_images_fit(r, config);
        }
        Some(Self {
            images: images?,
            vae: vae?,
            config: config?,
            posterior: posterior?,
            flip: flip?,
            batch: batch?.unsigned_abs(),
        })
    }

    fn shape(&self, r: &Reader<'_>) -> Shape {
        let input = r.input_shape("images");
        let factor = u32::try_from(self.config.factor()).ok();
        Shape {
            channels: u32::try_from(self.config.latent_channels).ok(),
            size: input.size.zip(factor).map(|((h, w), f)| (h / f, w / f)),
            latent_factor: factor,
        }
    }
}

/// `posterior`: `mean` or `draw { seed }`.
fn read_posterior(r: &mut Reader<'_>) -> Option<PosteriorChoice> {
    let c = r.ctor("posterior")?;
    match c.name {
        "mean" => Some(PosteriorChoice::Mean),
        "draw" => Some(PosteriorChoice::Draw { seed: r.arg_int(c, "seed", 0..)?.unsigned_abs() }),
        other => r.fail(ParamError::new("posterior", format!("unknown posterior choice `{other}`; use mean or draw"))),
    }
}

/// Images whose known channels or size the VAE cannot encode.
fn check_images_fit(r: &mut Reader<'_>, config: &VaeConfig) {
    let input = r.input_shape("images");
    if let Err(message) = config.check_images(input.channels, input.size) {
        let help = "crop the images to 3 channels and a side that is a multiple of the VAE's factor";
        r.fail::<()>(ParamError::new("images", message).with_help(help));
    }
}
