//! Sinusoidal timestep embeddings (guided-diffusion `nn.timestep_embedding`, after
//! Vaswani et al. 2017 and Ho et al. 2020): `[cos(t f_i), sin(t f_i)]` with
//! `f_i = max_period^(-i / half)`, `i < half = dim / 2`, cos first, computed in float32.

use tch::{Kind, Tensor};

/// ADM's `max_period`: the slowest frequency is 1/10000 (up to a factor (half-1)/half).
pub const MAX_PERIOD: f64 = 10_000.0;

/// Embeds timesteps `t` `[batch]` (any numeric kind; fractional allowed) as `[batch, dim]`
/// float32; an odd `dim` gets a zero last column.
#[allow(clippy::cast_precision_loss)]
pub fn timestep_embedding(t: &Tensor, dim: i64, max_period: f64) -> Tensor {
    let half = dim / 2;
    // Same order of float32 operations as the reference: (-ln(P) * i) / half, then exp.
    let freqs = (Tensor::arange(half, (Kind::Float, t.device())) * -max_period.ln() / half as f64).exp();
    let args = t.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[args.cos(), args.sin()], -1);
    if dim % 2 == 1 {
        Tensor::cat(&[&emb, &emb.narrow(1, 0, 1).zeros_like()], -1)
    } else {
        emb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cos_first_then_sin() {
        let e = timestep_embedding(&Tensor::from_slice(&[0.0f32, 1.0]), 4, MAX_PERIOD);
        // frequencies 1 and 10000^(-1/2) = 0.01
        let expected =
            Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 1f32.cos(), 0.01f32.cos(), 1f32.sin(), 0.01f32.sin()]);
        let diff = (e - expected.reshape([2, 4])).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn odd_width_pads_a_zero_column() {
        let e = timestep_embedding(&Tensor::from_slice(&[3i64, 7]), 5, MAX_PERIOD);
        assert_eq!(e.size(), [2, 5]);
        assert_eq!(e.narrow(1, 4, 1), Tensor::zeros([2, 1], (Kind::Float, tch::Device::Cpu)));
    }
}
