//! The ADM UNet (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs"; guided-diffusion
//! `unet.py` `UNetModel`): sinusoidal timestep embedding through a 2-layer MLP (plus a
//! learned label embedding), `input_blocks` of residual blocks (and attention at the
//! chosen resolutions) with 2x downsampling between levels, a `middle_block`
//! (res, attention, res), `output_blocks` that concatenate the matching skip and
//! upsample, and `out` (GroupNorm, SiLU, zero-initialized 3x3 conv). Parameter names
//! are guided-diffusion's (`time_embed.0`, `label_emb`, `input_blocks.{i}.{j}`,
//! `middle_block.{j}`, `output_blocks.{i}.{j}`, `out.{0,2}`), so ADM checkpoints
//! (in safetensors) load as they are; see [`UNetConfig::num_classes`] for `label_emb`.

pub mod attention;
pub mod resample;
pub mod resblock;
pub mod sequential;
pub mod timestep;

use std::borrow::Borrow;

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use self::attention::AttentionBlock;
use self::resample::{Downsample, Upsample};
use self::resblock::{ResBlock, Resample};
use self::sequential::{EmbedSequential, Layer};
use self::timestep::{timestep_embedding, MAX_PERIOD};
use super::layers::{self, GroupNorm32, ZERO};
pub use msnr::nets::UNetConfig;

/// The ADM UNet.
#[derive(Debug)]
pub struct UNet {
    /// Its hyper-parameters.
    cfg: UNetConfig,
    /// `time_embed.0` and `time_embed.2`: `model_channels` to 4x to 4x, SiLU between.
    time_embed: (nn::Linear, nn::Linear),
    /// `label_emb`: `num_classes + 1` rows (the last is the null label); none when unconditional.
    label_emb: Option<nn::Embedding>,
    /// `input_blocks.{i}`.
    input_blocks: Vec<EmbedSequential>,
    /// `middle_block`.
    middle_block: EmbedSequential,
    /// `output_blocks.{i}`.
    output_blocks: Vec<EmbedSequential>,
    /// `out.0`.
    out_norm: GroupNorm32,
    /// `out.2` (zero-initialized).
    out_conv: nn::Conv2D,
}

impl UNet {
    /// Builds the UNet under `vs` with PyTorch's initialization and ADM's zeroed output
    /// convs. `cfg` must pass [`UNetConfig::validate`] (panics otherwise, as libtorch does
    /// on a shape error).
    pub fn new<'a>(vs: impl Borrow<nn::Path<'a>>, cfg: UNetConfig) -> Self {
        let vs = vs.borrow();
        let (mc, emb) = (cfg.model_channels, cfg.emb_channels());
        let (input_blocks, skips) = input_blocks(&(vs / "input_blocks"), &cfg);
        let deepest = skips.last().copied().unwrap_or(mc);
        let middle_block = middle_block(&(vs / "middle_block"), &cfg, deepest);
        let (output_blocks, ch) = output_blocks(&(vs / "output_blocks"), &cfg, deepest, skips);
        let label_cfg = nn::EmbeddingConfig::default(); // N(0, 1), as nn.Embedding
        Self {
            time_embed: (
                layers::linear(&(vs / "time_embed" / 0), mc, emb, None),
                layers::linear(&(vs / "time_embed" / 2), emb, emb, None),
            ),
            label_emb: (cfg.num_classes > 0)
                .then(|| nn::embedding(vs / "label_emb", cfg.num_classes + 1, emb, label_cfg)),
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: GroupNorm32::new(&(vs / "out" / 0), ch),
            out_conv: layers::conv3x3(&(vs / "out" / 2), ch, cfg.out_channels, 1, Some(ZERO)),
            cfg,
        }
    }

    /// Its hyper-parameters.
    #[must_use]
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Denoises `x` `[batch, in_channels, size, size]` at timesteps `t` `[batch]` (any
    /// numeric kind, fractional allowed) for labels `y` `[batch]` (in `0..=num_classes`,
    /// `num_classes` being the null label; `None` means the null label). An unconditional
    /// UNet ignores `y`. Dropout is active when `train`. Returns `[batch, out_channels, size, size]`.
    pub fn forward_t(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>, train: bool) -> Tensor {
        let emb = self.embed(t, y, x.size()[0]);
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.shallow_clone();
        for block in &self.input_blocks {
            h = block.forward(&h, &emb, train);
            skips.push(h.shallow_clone());
        }
        h = self.middle_block.forward(&h, &emb, train);
        for (block, skip) in self.output_blocks.iter().zip(skips.iter().rev()) {
            h = block.forward(&Tensor::cat(&[&h, skip], 1), &emb, train);
        }
        self.out_conv.forward(&self.out_norm.forward(&h).silu())
    }

    /// [`UNet::forward_t`] in evaluation mode.
    pub fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Tensor {
        self.forward_t(x, t, y, false)
    }

    /// `time_embed(timestep_embedding(t)) + label_emb(y)`.
    fn embed(&self, t: &Tensor, y: Option<&Tensor>, batch: i64) -> Tensor {
        let sinusoid = timestep_embedding(t, self.cfg.model_channels, MAX_PERIOD);
        let emb = self.time_embed.1.forward(&self.time_embed.0.forward(&sinusoid).silu());
        let Some(labels) = &self.label_emb else { return emb };
        let y = match y {
            Some(y) => y.to_kind(Kind::Int64),
            None => Tensor::full([batch], self.cfg.num_classes, (Kind::Int64, t.device())),
        };
        emb + labels.forward(&y)
    }
}

/// `input_blocks` and the channels of each one's output (the skips, in order).
fn input_blocks(vs: &nn::Path, cfg: &UNetConfig) -> (Vec<EmbedSequential>, Vec<i64>) {
    let mut ch = cfg.model_channels * cfg.channel_mult[0];
    let mut blocks =
        vec![EmbedSequential(vec![Layer::Conv(layers::conv3x3(&(vs / 0 / 0), cfg.in_channels, ch, 1, None))])];
    let mut skips = vec![ch];
    for (level, mult) in cfg.channel_mult.iter().enumerate() {
        for _ in 0..cfg.num_res_blocks {
            let out = cfg.model_channels * mult;
            blocks.push(res_attn(&(vs / blocks.len()), cfg, (ch, out), cfg.attends_at(level)));
            ch = out;
            skips.push(ch);
        }
        if level + 1 < cfg.channel_mult.len() {
            let path = vs / blocks.len() / 0;
            let down = if cfg.resblock_updown {
                Layer::Res(Box::new(ResBlock::new(&path, cfg, (ch, ch), Resample::Down)))
            } else {
                Layer::Down(Downsample::new(&path, ch, cfg.conv_resample))
            };
            blocks.push(EmbedSequential(vec![down]));
            skips.push(ch);
        }
    }
    (blocks, skips)
}

/// A residual block from `cin` to `cout` channels, followed by attention when `attend`.
fn res_attn(vs: &nn::Path, cfg: &UNetConfig, (cin, cout): (i64, i64), attend: bool) -> EmbedSequential {
    let mut block =
        EmbedSequential(vec![Layer::Res(Box::new(ResBlock::new(&(vs / 0), cfg, (cin, cout), Resample::Keep)))]);
    if attend {
        block.0.push(Layer::Attn(Box::new(AttentionBlock::new(&(vs / 1), cout, cfg.heads_for(cout)))));
    }
    block
}

/// `middle_block`: res, attention, res at the deepest level's `ch` channels.
fn middle_block(vs: &nn::Path, cfg: &UNetConfig, ch: i64) -> EmbedSequential {
    EmbedSequential(vec![
        Layer::Res(Box::new(ResBlock::new(&(vs / 0), cfg, (ch, ch), Resample::Keep))),
        Layer::Attn(Box::new(AttentionBlock::new(&(vs / 1), ch, cfg.heads_for(ch)))),
        Layer::Res(Box::new(ResBlock::new(&(vs / 2), cfg, (ch, ch), Resample::Keep))),
    ])
}

/// `output_blocks`, consuming the skips from the deepest; returns them and the final width.
fn output_blocks(vs: &nn::Path, cfg: &UNetConfig, mut ch: i64, mut skips: Vec<i64>) -> (Vec<EmbedSequential>, i64) {
    let mut blocks: Vec<EmbedSequential> = Vec::new();
    for (level, mult) in cfg.channel_mult.iter().enumerate().rev() {
        for i in 0..=cfg.num_res_blocks {
            let path = vs / blocks.len();
            let (skip, out) = (skips.pop().unwrap_or(0), cfg.model_channels * mult);
            let mut block = res_attn(&path, cfg, (ch + skip, out), cfg.attends_at(level));
            ch = out;
            if level > 0 && i == cfg.num_res_blocks {
                let up_path = &path / block.len();
                block.0.push(if cfg.resblock_updown {
                    Layer::Res(Box::new(ResBlock::new(&up_path, cfg, (ch, ch), Resample::Up)))
                } else {
                    Layer::Up(Upsample::new(&up_path, ch, cfg.conv_resample))
                });
            }
            blocks.push(block);
        }
    }
    (blocks, ch)
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    fn names(cfg: UNetConfig) -> Vec<String> {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = UNet::new(vs.root(), cfg);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        names
    }

    #[test]
    fn parameter_paths_follow_guided_diffusion() {
        let names = names(UNetConfig::tiny());
        for expected in [
            "time_embed.0.weight",
            "time_embed.2.bias",
            "label_emb.weight",
            "input_blocks.0.0.weight",
            "input_blocks.1.0.in_layers.0.weight",
            "input_blocks.1.0.emb_layers.1.weight",
            "input_blocks.1.0.out_layers.3.weight",
            "input_blocks.2.0.op.weight",
            "input_blocks.3.0.skip_connection.weight",
            "input_blocks.3.1.qkv.weight",
            "middle_block.1.proj_out.bias",
            "middle_block.2.out_layers.0.bias",
            "output_blocks.1.2.conv.weight",
            "output_blocks.3.0.skip_connection.weight",
            "out.0.weight",
            "out.2.weight",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
    }

    #[test]
    fn mnist_sizes_round_trip() {
        let cfg = UNetConfig {
            image_size: 28,
            in_channels: 1,
            out_channels: 1,
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![7],
            ..UNetConfig::default()
        };
        cfg.validate().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let unet = UNet::new(vs.root(), cfg);
        let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let out = unet.forward(&x, &Tensor::from_slice(&[1.0f32, 500.0]), None);
        assert_eq!(out.size(), [2, 1, 28, 28]);
        // zero_module on out.2: a fresh UNet predicts exactly zero.
        assert_eq!(out, out.zeros_like());
    }
}
