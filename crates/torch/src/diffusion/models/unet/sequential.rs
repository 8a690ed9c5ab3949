//! guided-diffusion's `TimestepEmbedSequential`: one entry of `input_blocks`,
//! `middle_block` or `output_blocks`, whose residual blocks also take the embedding.

use tch::nn::{self, Module};
use tch::Tensor;

use super::attention::AttentionBlock;
use super::resample::{Downsample, Upsample};
use super::resblock::ResBlock;

/// One layer of a block; its index in the block is its parameter-path component.
#[derive(Debug)]
pub enum Layer {
    /// The input 3x3 conv (`input_blocks.0.0`).
    Conv(nn::Conv2D),
    /// A residual block (boxed: it is much larger than the other layers).
    Res(Box<ResBlock>),
    /// Self-attention (boxed, as the residual block).
    Attn(Box<AttentionBlock>),
    /// 2x downsampling.
    Down(Downsample),
    /// 2x upsampling.
    Up(Upsample),
}

/// A sequence of layers applied in order.
#[derive(Debug, Default)]
pub struct EmbedSequential(pub Vec<Layer>);

impl EmbedSequential {
    /// Applies the layers; residual blocks get `emb` and the `train` flag (dropout).
    pub fn forward(&self, x: &Tensor, emb: &Tensor, train: bool) -> Tensor {
        self.0.iter().fold(x.shallow_clone(), |h, layer| match layer {
            Layer::Conv(conv) => conv.forward(&h),
            Layer::Res(res) => res.forward(&h, emb, train),
            Layer::Attn(attn) => attn.forward(&h),
            Layer::Down(down) => down.forward(&h),
            Layer::Up(up) => up.forward(&h),
        })
    }

    /// The number of layers, which is also the path index of the next one.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no layers.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
