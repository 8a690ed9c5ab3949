//! The ADM residual block (guided-diffusion `ResBlock`): GroupNorm, SiLU, 3x3 conv;
//! the timestep embedding added (or, with `use_scale_shift_norm`, applied FiLM-style
//! as `norm(h) * (1 + scale) + shift`); GroupNorm, SiLU, dropout, zero-initialized 3x3
//! conv; plus a skip connection (1x1 conv when the width changes). With `up`/`down`
//! it also resamples, without learned weights, between the first norm and conv.

use tch::nn::{self, Module};
use tch::Tensor;

use super::resample::{avg_pool_2x, nearest_2x};
use crate::diffusion::models::layers::{self, GroupNorm32, ZERO};
use msnr::nets::UNetConfig;

/// Whether a residual block also resamples (`up=True` / `down=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Keeps the size.
    Keep,
    /// Doubles it (nearest).
    Up,
    /// Halves it (2x2 average).
    Down,
}

impl Resample {
    /// Applies the resampling (`h_upd` / `x_upd`).
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Self::Keep => x.shallow_clone(),
            Self::Up => nearest_2x(x),
            Self::Down => avg_pool_2x(x),
        }
    }
}

/// A residual block conditioned on the timestep embedding.
#[derive(Debug)]
pub struct ResBlock {
    /// `in_layers.0`.
    in_norm: GroupNorm32,
    /// `in_layers.2`.
    in_conv: nn::Conv2D,
    /// `emb_layers.1`: embedding -> out (or 2 * out for scale and shift).
    emb: nn::Linear,
    /// `out_layers.0`.
    out_norm: GroupNorm32,
    /// `out_layers.3` (zero-initialized).
    out_conv: nn::Conv2D,
    /// `skip_connection`, a 1x1 conv when the width changes.
    skip: Option<nn::Conv2D>,
    /// Up- or downsampling inside the block.
    resample: Resample,
    /// FiLM conditioning (`use_scale_shift_norm`).
    scale_shift: bool,
    /// Dropout rate before the last conv.
    dropout: f64,
}

impl ResBlock {
    /// Builds a block from `cin` to `cout` channels under `vs` (e.g. `input_blocks.1.0`).
    #[must_use]
    pub fn new(vs: &nn::Path, cfg: &UNetConfig, (cin, cout): (i64, i64), resample: Resample) -> Self {
        let emb_out = if cfg.use_scale_shift_norm { 2 * cout } else { cout };
        Self {
            in_norm: GroupNorm32::new(&(vs / "in_layers" / 0), cin),
            in_conv: layers::conv3x3(&(vs / "in_layers" / 2), cin, cout, 1, None),
            emb: layers::linear(&(vs / "emb_layers" / 1), cfg.emb_channels(), emb_out, None),
            out_norm: GroupNorm32::new(&(vs / "out_layers" / 0), cout),
            out_conv: layers::conv3x3(&(vs / "out_layers" / 3), cout, cout, 1, Some(ZERO)),
            skip: (cin != cout).then(|| layers::conv2d(&(vs / "skip_connection"), cin, cout, 1, 1)),
            resample,
            scale_shift: cfg.use_scale_shift_norm,
            dropout: cfg.dropout,
        }
    }

    /// `x` `[b, cin, h, w]` and `emb` `[b, emb_channels]` to `[b, cout, h', w']`.
    pub fn forward(&self, x: &Tensor, emb: &Tensor, train: bool) -> Tensor {
        let h = self.resample.apply(&self.in_norm.forward(x).silu());
        let h = self.in_conv.forward(&h);
        let x = self.resample.apply(x);
        let e = self.emb.forward(&emb.silu()).unsqueeze(-1).unsqueeze(-1);
        let h = if self.scale_shift {
            let scale_shift = e.chunk(2, 1);
            self.out_norm.forward(&h) * (&scale_shift[0] + 1.0) + &scale_shift[1]
        } else {
            self.out_norm.forward(&(h + e))
        };
        let h = self.out_conv.forward(&h.silu().dropout(self.dropout, train));
        match &self.skip {
            Some(skip) => skip.forward(&x) + h,
            None => x + h,
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    fn block(cfg: &UNetConfig, resample: Resample) -> (nn::VarStore, ResBlock) {
        let vs = nn::VarStore::new(Device::Cpu);
        let b = ResBlock::new(&vs.root(), cfg, (32, 64), resample);
        (vs, b)
    }

    #[test]
    fn zero_init_makes_the_block_its_skip() {
        let cfg = UNetConfig::tiny();
        let (_vs, b) = block(&cfg, Resample::Keep);
        let x = Tensor::randn([2, 32, 4, 4], (Kind::Float, Device::Cpu));
        let emb = Tensor::randn([2, cfg.emb_channels()], (Kind::Float, Device::Cpu));
        assert_eq!(b.forward(&x, &emb, false), b.skip.as_ref().unwrap().forward(&x));
    }

    #[test]
    fn resampling_and_dropout() {
        let cfg = UNetConfig { dropout: 0.5, ..UNetConfig::tiny() };
        let (_vs, mut b) = block(&cfg, Resample::Down);
        tch::no_grad(|| b.out_conv.ws.copy_(&b.out_conv.ws.randn_like()));
        let x = Tensor::randn([2, 32, 8, 8], (Kind::Float, Device::Cpu));
        let emb = Tensor::randn([2, cfg.emb_channels()], (Kind::Float, Device::Cpu));
        let eval = b.forward(&x, &emb, false);
        assert_eq!(eval.size(), [2, 64, 4, 4]);
        assert_eq!(eval, b.forward(&x, &emb, false));
        assert_ne!(eval, b.forward(&x, &emb, true));
        assert_eq!(Resample::Up.apply(&x).size(), [2, 32, 16, 16]);
    }
}
