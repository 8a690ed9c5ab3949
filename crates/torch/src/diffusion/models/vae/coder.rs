//! diffusers' VAE `Encoder` and `Decoder` (`models/autoencoders/vae.py`) with
//! `DownEncoderBlock2D`/`UpDecoderBlock2D` blocks, group norms and SiLU.

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::{group_norm, DownEncoderBlock2D, MidBlock, UpDecoderBlock2D};
use crate::diffusion::models::layers::conv3x3;
use msnr::nets::VaeConfig;

/// `Encoder(double_z=True)`: images `[b, 3, h, w]` to the posterior's moments
/// `[b, 2 * latent, h / f, w / f]` (before `quant_conv`).
#[derive(Debug)]
pub struct Encoder {
    conv_in: nn::Conv2D,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: MidBlock,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Encoder {
    /// Builds it under `vs` (`encoder`).
    #[must_use]
    pub fn new(vs: &nn::Path, c: &VaeConfig) -> Self {
        let (widths, groups) = (&c.block_out_channels, c.norm_num_groups);
        let last = widths[widths.len() - 1];
        let down_blocks = widths
            .iter()
            .enumerate()
            .map(|(i, &cout)| {
                let cin = if i == 0 { widths[0] } else { widths[i - 1] };
                let downsample = i + 1 < widths.len();
                DownEncoderBlock2D::new(&(vs / "down_blocks" / i), cin, cout, c.layers_per_block, groups, downsample)
            })
            .collect();
        Self {
            conv_in: conv3x3(&(vs / "conv_in"), c.image_channels, widths[0], 1, None),
            down_blocks,
            mid_block: MidBlock::new(&(vs / "mid_block"), last, groups),
            conv_norm_out: group_norm(&(vs / "conv_norm_out"), groups, last),
            conv_out: conv3x3(&(vs / "conv_out"), last, 2 * c.latent_channels, 1, None),
        }
    }

    /// `Encoder.forward`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.down_blocks.iter().fold(self.conv_in.forward(x), |h, b| b.forward(&h));
        let h = self.mid_block.forward(&h);
        self.conv_out.forward(&self.conv_norm_out.forward(&h).silu())
    }
}

/// `Decoder(norm_type="group")`: latents `[b, latent, h, w]` (after `post_quant_conv`)
/// to images `[b, 3, f h, f w]`; each up block has `layers_per_block + 1` resnets.
#[derive(Debug)]
pub struct Decoder {
    conv_in: nn::Conv2D,
    mid_block: MidBlock,
    up_blocks: Vec<UpDecoderBlock2D>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Decoder {
    /// Builds it under `vs` (`decoder`).
    #[must_use]
    pub fn new(vs: &nn::Path, c: &VaeConfig) -> Self {
        let groups = c.norm_num_groups;
        let reversed: Vec<i64> = c.block_out_channels.iter().rev().copied().collect();
        let up_blocks = reversed
            .iter()
            .enumerate()
            .map(|(i, &cout)| {
                let cin = if i == 0 { reversed[0] } else { reversed[i - 1] };
                let upsample = i + 1 < reversed.len();
                UpDecoderBlock2D::new(&(vs / "up_blocks" / i), cin, cout, c.layers_per_block + 1, groups, upsample)
            })
            .collect();
        let first = c.block_out_channels[0];
        Self {
            conv_in: conv3x3(&(vs / "conv_in"), c.latent_channels, reversed[0], 1, None),
            mid_block: MidBlock::new(&(vs / "mid_block"), reversed[0], groups),
            up_blocks,
            conv_norm_out: group_norm(&(vs / "conv_norm_out"), groups, first),
            conv_out: conv3x3(&(vs / "conv_out"), first, c.image_channels, 1, None),
        }
    }

    /// `Decoder.forward`.
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let h = self.mid_block.forward(&self.conv_in.forward(z));
        let h = self.up_blocks.iter().fold(h, |h, b| b.forward(&h));
        self.conv_out.forward(&self.conv_norm_out.forward(&h).silu())
    }
}
