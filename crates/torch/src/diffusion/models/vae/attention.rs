//! The VAE's mid-block self-attention: diffusers' `Attention` as `UNetMidBlock2D` builds
//! it (`attention_processor.py`; one head of width `channels`, `residual_connection`,
//! `norm_num_groups`): GroupNorm, `to_q`/`to_k`/`to_v` linears over the pixels,
//! `softmax(q k^T / sqrt(c)) v`, `to_out.0`, plus the input. Older diffusers
//! checkpoints name these `query`/`key`/`value`/`proj_attn` ([`super::renamed`]).

use tch::nn::{self, Module};
use tch::Tensor;

use super::blocks::group_norm;
use crate::diffusion::models::layers::linear;

/// Single-head self-attention over the pixels of `[b, c, h, w]` features.
#[derive(Debug)]
pub struct Attention {
    group_norm: nn::GroupNorm,
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    /// `to_out.0` (`to_out.1` is a dropout).
    to_out: nn::Linear,
}

impl Attention {
    /// Builds it under `vs` (`*.mid_block.attentions.0`).
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, groups: i64) -> Self {
        Self {
            group_norm: group_norm(&(vs / "group_norm"), groups, channels),
            to_q: linear(&(vs / "to_q"), channels, channels, None),
            to_k: linear(&(vs / "to_k"), channels, channels, None),
            to_v: linear(&(vs / "to_v"), channels, channels, None),
            to_out: linear(&(vs / "to_out" / 0), channels, channels, None),
        }
    }

    /// `x` `[b, c, h, w]` to the same shape (`AttnProcessor2_0.__call__`).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let shape = x.size();
        let (batch, channels) = (shape[0], shape[1]);
        let tokens = self.group_norm.forward(x).reshape([batch, channels, -1]).transpose(1, 2);
        let [q, k, v] = [&self.to_q, &self.to_k, &self.to_v].map(|l| l.forward(&tokens).unsqueeze(1));
        let attended = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<&Tensor>, 0.0, false, None, false);
        let out = self.to_out.forward(&attended.squeeze_dim(1));
        x + out.transpose(1, 2).reshape(shape)
    }
}
