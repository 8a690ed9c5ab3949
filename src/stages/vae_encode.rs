//! The `vae_encode` kind (planned: declared and checked, not run yet): a dataset of
//! images becomes latents through Stable Diffusion's VAE encoder, times `scale`.

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{Positive, Reader, Shape, Source};

/// The VAE's spatial downsampling factor (three 2x downsamplings of `AutoencoderKL`).
pub const FACTOR: u32 = 8;
/// Latent channels of the SD VAE.
pub const LATENT_CHANNELS: u32 = 4;

/// The `vae_encode` kind's parameters (`stdlib/data.msnr`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VaeEncodeParams {
    /// The images to encode.
    pub images: Source,
    /// The VAE weights.
    pub vae: Source,
    /// Latent scale factor.
    pub scale: f64,
    /// Images per batch.
    pub batch: u64,
}

impl KindParams for VaeEncodeParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let images = r.source("images");
        let vae = r.source("vae");
        let scale = r.float("scale", Positive);
        let batch = r.int("batch", 1..);
        Some(Self { images: images?, vae: vae?, scale: scale?, batch: batch?.unsigned_abs() })
    }

    fn shape(&self, r: &Reader<'_>) -> Shape {
        let input = r.input_shape("images");
        Shape { channels: Some(LATENT_CHANNELS), size: input.size.map(|(h, w)| (h / FACTOR, w / FACTOR)) }
    }
}
