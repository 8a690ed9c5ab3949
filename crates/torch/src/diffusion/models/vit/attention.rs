//! Multi-head self-attention of the seed ViT (`vision_transformer.py` `Attention`,
//! `qkv_bias=True`): one bias-free qkv projection plus separate q and v biases
//! (BEiT's layout; k has no bias), `softmax(q k^T / sqrt(d_head)) v`, output projection.

use tch::nn::{self, Init, Module};
use tch::Tensor;

/// Self-attention over tokens `[batch, tokens, width]`.
#[derive(Debug)]
pub struct Attention {
    /// `qkv.weight`: `[3 * width, width]`.
    qkv: Tensor,
    /// `q_bias`: `[width]`.
    q_bias: Tensor,
    /// `v_bias`: `[width]`.
    v_bias: Tensor,
    /// `proj`: width -> width.
    proj: nn::Linear,
    /// Number of heads.
    heads: i64,
}

impl Attention {
    /// Builds the layer under `vs` (`blocks.{i}.attn`); `proj_std` is the seed's
    /// `0.02 / sqrt(2 * layer_id)` (`fix_init_weight`).
    #[must_use]
    pub fn new(vs: &nn::Path, width: i64, heads: i64, proj_std: f64) -> Self {
        let normal = |stdev| Init::Randn { mean: 0.0, stdev };
        let proj_cfg = nn::LinearConfig { ws_init: normal(proj_std), bs_init: Some(Init::Const(0.0)), bias: true };
        Self {
            qkv: vs.sub("qkv").var("weight", &[3 * width, width], normal(0.02)),
            q_bias: vs.var("q_bias", &[width], Init::Const(0.0)),
            v_bias: vs.var("v_bias", &[width], Init::Const(0.0)),
            proj: nn::linear(vs / "proj", width, width, proj_cfg),
            heads,
        }
    }

    /// Attends over `x`: `[batch, tokens, width]` to the same shape.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (batch, tokens, width) = dims3(x);
        let bias = Tensor::cat(&[&self.q_bias, &self.v_bias.zeros_like(), &self.v_bias], 0);
        // [batch, tokens, 3, heads, d] -> [3, batch, heads, tokens, d]
        let qkv = x.linear(&self.qkv, Some(&bias)).reshape([batch, tokens, 3, self.heads, -1]).permute([2, 0, 3, 1, 4]);
        // `unbind`, as Python's `q, k, v = qkv` does: its backward stacks the three gradients in
        // one kernel, where three `select`s would each scatter into a zeroed qkv-sized tensor
        // and sum them (about 3 GB of memory traffic per ViT-B/2 block at batch 256).
        let mut parts = qkv.unbind(0).into_iter();
        let (Some(query), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            unreachable!("dimension 0 of qkv has size 3")
        };
        let attended =
            Tensor::scaled_dot_product_attention(&query, &key, &value, None::<&Tensor>, 0.0, false, None, false);
        self.proj.forward(&attended.transpose(1, 2).reshape([batch, tokens, width]))
    }
}

/// The three sizes of a `[batch, tokens, width]` tensor.
pub(crate) fn dims3(x: &Tensor) -> (i64, i64, i64) {
    let s = x.size();
    (s[0], s[1], s[2])
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn matches_explicit_softmax_attention() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut attn = Attention::new(&(vs.root() / "attn"), 16, 2, 0.02);
        tch::no_grad(|| {
            attn.q_bias.copy_(&Tensor::randn([16], (Kind::Float, Device::Cpu)));
            attn.v_bias.copy_(&Tensor::randn([16], (Kind::Float, Device::Cpu)));
        });
        let input = Tensor::randn([2, 5, 16], (Kind::Float, Device::Cpu));
        let (w, zero) = (attn.qkv.chunk(3, 0), attn.q_bias.zeros_like());
        let split = |h: Tensor| h.reshape([2, 5, 2, 8]).transpose(1, 2);
        let query = split(input.linear(&w[0], Some(&attn.q_bias)));
        let key = split(input.linear(&w[1], Some(&zero)));
        let value = split(input.linear(&w[2], Some(&attn.v_bias)));
        let weights = (query.matmul(&key.transpose(-2, -1)) / 8f64.sqrt()).softmax(-1, Kind::Float);
        let expected = attn.proj.forward(&weights.matmul(&value).transpose(1, 2).reshape([2, 5, 16]));
        let diff = (attn.forward(&input) - expected).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn parameter_names_are_the_seeds() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Attention::new(&(vs.root() / "attn"), 8, 2, 0.02);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, ["attn.proj.bias", "attn.proj.weight", "attn.q_bias", "attn.qkv.weight", "attn.v_bias"]);
    }
}
