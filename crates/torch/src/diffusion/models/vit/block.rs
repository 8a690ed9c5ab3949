//! One pre-LN transformer block of the seed ViT (`vision_transformer.py` `Block` with
//! `Mlp`): `x + attn(norm1(x))`, then `x + fc2(gelu(fc1(norm2(x))))`; LayerNorm eps 1e-6.

use tch::nn::{self, Init, Module};
use tch::Tensor;

use super::attention::Attention;
use crate::diffusion::models::layers::at_least_f32;

/// The seed's `norm_layer`: `partial(nn.LayerNorm, eps=1e-6)`.
fn layer_norm(vs: nn::Path, width: i64) -> nn::LayerNorm {
    nn::layer_norm(vs, vec![width], nn::LayerNormConfig { eps: 1e-6, ..Default::default() })
}

/// `nn.Linear` initialized as the seed's `_init_weights`: N(0, std) weights, zero bias
/// (timm's `trunc_normal_` cuts at +-2 absolute, 100 std at std 0.02: a plain normal).
fn linear(vs: nn::Path, fan_in: i64, out: i64, std: f64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: Init::Randn { mean: 0.0, stdev: std },
        bs_init: Some(Init::Const(0.0)),
        bias: true,
    };
    nn::linear(vs, fan_in, out, cfg)
}

/// A transformer block (`blocks.{i}`).
#[derive(Debug)]
pub struct Block {
    /// `norm1`.
    norm1: nn::LayerNorm,
    /// `attn`.
    attn: Attention,
    /// `norm2`.
    norm2: nn::LayerNorm,
    /// `mlp.fc1`.
    fc1: nn::Linear,
    /// `mlp.fc2`.
    fc2: nn::Linear,
}

impl Block {
    /// Builds block `layer_id` (1-based; the seed divides the init of `attn.proj` and
    /// `mlp.fc2` by `sqrt(2 * layer_id)`).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn new(vs: &nn::Path, width: i64, heads: i64, hidden: i64, layer_id: i64) -> Self {
        let residual_std = 0.02 / (2.0 * layer_id as f64).sqrt();
        let mlp = vs / "mlp";
        Self {
            norm1: layer_norm(vs / "norm1", width),
            attn: Attention::new(&(vs / "attn"), width, heads, residual_std),
            norm2: layer_norm(vs / "norm2", width),
            fc1: linear(&mlp / "fc1", width, hidden, 0.02),
            fc2: linear(&mlp / "fc2", hidden, width, residual_std),
        }
    }

    /// `[batch, tokens, width]` to the same shape. The norms run in float32, as the seed's
    /// (float64 in a float64 net).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let norm = |ln: &nn::LayerNorm, x: &Tensor| ln.forward(&at_least_f32(x)).to_kind(x.kind());
        let x = x + self.attn.forward(&norm(&self.norm1, x));
        let h = self.fc1.forward(&norm(&self.norm2, &x)).gelu("none");
        x + self.fc2.forward(&h)
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn residual_init_shrinks_with_depth() {
        let vs = nn::VarStore::new(Device::Cpu);
        let deep = Block::new(&(vs.root() / "b"), 64, 4, 256, 50);
        let std = f64::try_from(deep.fc2.ws.std(true)).unwrap();
        assert!((std - 0.002).abs() < 0.0003, "{std}");
        let x = Tensor::randn([2, 3, 64], (Kind::Float, Device::Cpu));
        assert_eq!(deep.forward(&x).size(), [2, 3, 64]);
    }
}
