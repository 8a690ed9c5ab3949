//! Spatial self-attention of the ADM UNet (guided-diffusion `AttentionBlock` with
//! `QKVAttentionLegacy`, the order of the released checkpoints): GroupNorm, a 1x1
//! conv to q, k, v with the heads split before q, k, v, `softmax(q k^T / sqrt(d)) v`,
//! and a zero-initialized 1x1 output conv added to the input.

use tch::nn::{self, Module};
use tch::Tensor;

use crate::diffusion::models::layers::{self, GroupNorm32, ZERO};

/// Self-attention over the pixels of `[b, c, h, w]` features.
#[derive(Debug)]
pub struct AttentionBlock {
    /// `norm`.
    norm: GroupNorm32,
    /// `qkv`: Conv1d c -> 3c, kernel 1.
    qkv: nn::Conv1D,
    /// `proj_out`: Conv1d c -> c, kernel 1, zero-initialized.
    proj_out: nn::Conv1D,
    /// Number of heads.
    heads: i64,
}

impl AttentionBlock {
    /// Builds it under `vs` (e.g. `middle_block.1`).
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, heads: i64) -> Self {
        Self {
            norm: GroupNorm32::new(&(vs / "norm"), channels),
            qkv: layers::conv1x1(&(vs / "qkv"), channels, 3 * channels, None),
            proj_out: layers::conv1x1(&(vs / "proj_out"), channels, channels, Some(ZERO)),
            heads,
        }
    }

    /// `x` `[b, c, h, w]` to the same shape.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let shape = x.size();
        let (batch, channels) = (shape[0], shape[1]);
        let flat = x.reshape([batch, channels, -1]);
        let qkv = self.qkv.forward(&self.norm.forward(&flat));
        // Legacy order: [batch, heads * 3 * d, pixels] -> per head [q; k; v], each [batch, heads, d, pixels].
        let parts = qkv.reshape([batch, self.heads, 3 * (channels / self.heads), -1]).chunk(3, 2);
        let [query, key, value] = [0, 1, 2].map(|i| parts[i].transpose(-1, -2));
        let attended =
            Tensor::scaled_dot_product_attention(&query, &key, &value, None::<&Tensor>, 0.0, false, None, false);
        let out = self.proj_out.forward(&attended.transpose(-1, -2).reshape([batch, channels, -1]));
        (flat + out).reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn zero_init_is_the_identity_and_shapes_hold() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut attn = AttentionBlock::new(&vs.root(), 64, 2);
        let x = Tensor::randn([2, 64, 7, 7], (Kind::Float, Device::Cpu));
        assert_eq!(attn.forward(&x), x);
        tch::no_grad(|| attn.proj_out.ws.copy_(&attn.proj_out.ws.randn_like()));
        assert_eq!(attn.forward(&x).size(), [2, 64, 7, 7]);
        assert_ne!(attn.forward(&x), x);
    }
}
