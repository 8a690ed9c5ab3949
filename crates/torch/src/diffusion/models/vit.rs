//! The seed paper's denoising ViT (Hang et al. 2023; Min-SNR-Diffusion-Training,
//! `guided_diffusion/vision_transformer.py` `VisionTransformer`): a plain pre-LN ViT.
//! The timestep and the class enter as two learned in-context tokens before the patch
//! tokens, positions are learned and absolute, and a linear head per patch token is
//! unpatchified into the image. Parameter names are the seed's, so its checkpoints
//! (converted to safetensors) load as they are:
//! `patch_embed.proj`, `pos_embed`, `time_embedding`, `class_embedding`,
//! `blocks.{i}.{norm1, attn.{qkv, q_bias, v_bias, proj}, norm2, mlp.{fc1, fc2}}`,
//! `linear_projection`.

pub mod attention;
pub mod block;

use std::borrow::Borrow;

use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use self::attention::dims3;
use self::block::Block;
use super::layers;
pub use msnr::nets::ViTConfig;

/// The seed ViT.
#[derive(Debug)]
pub struct ViT {
    /// Its hyper-parameters.
    cfg: ViTConfig,
    /// `patch_embed.proj`: a patch x patch conv with stride patch.
    patch_embed: nn::Conv2D,
    /// `pos_embed`: `[1, extra + grid^2, width]`.
    pos_embed: Tensor,
    /// `time_embedding`: one learned token per timestep (`time_rows` rows, at least T).
    time_embedding: nn::Embedding,
    /// `class_embedding`: `num_classes` tokens, plus the null label's when `null_class`;
    /// none when unconditional.
    class_embedding: Option<nn::Embedding>,
    /// `blocks.{i}`.
    blocks: Vec<Block>,
    /// `linear_projection`: `width` to `patch * patch * out_channels` per token.
    linear_projection: nn::Linear,
}

impl ViT {
    /// Builds the ViT under `vs`, initialized as the seed initializes it. `cfg` must pass
    /// [`ViTConfig::validate`] (panics otherwise, like any shape error in libtorch).
    pub fn new<'a>(vs: impl Borrow<nn::Path<'a>>, cfg: ViTConfig) -> Self {
        let vs = vs.borrow();
        let normal = |stdev| Init::Randn { mean: 0.0, stdev };
        let tokens = cfg.extra_tokens() + cfg.grid() * cfg.grid();
        let embed = nn::EmbeddingConfig { ws_init: normal(1.0), ..Default::default() };
        let head_cfg = nn::LinearConfig { ws_init: normal(0.02 * 0.001), bs_init: Some(Init::Const(0.0)), bias: true };
        let out = cfg.patch * cfg.patch * cfg.out_channels;
        Self {
            patch_embed: layers::conv2d(
                &(vs / "patch_embed" / "proj"),
                cfg.in_channels,
                cfg.width,
                cfg.patch,
                cfg.patch,
            ),
            pos_embed: vs.var("pos_embed", &[1, tokens, cfg.width], normal(0.02)),
            time_embedding: nn::embedding(vs / "time_embedding", cfg.time_table_rows(), cfg.width, embed),
            class_embedding: (cfg.num_classes > 0)
                .then(|| nn::embedding(vs / "class_embedding", cfg.class_rows(), cfg.width, embed)),
            blocks: (0..cfg.depth)
                .map(|i| Block::new(&(vs / "blocks" / i), cfg.width, cfg.heads, cfg.mlp_hidden(), i + 1))
                .collect(),
            linear_projection: nn::linear(vs / "linear_projection", cfg.width, out, head_cfg),
            cfg,
        }
    }

    /// Its hyper-parameters.
    #[must_use]
    pub fn config(&self) -> &ViTConfig {
        &self.cfg
    }

    /// Denoises `x` `[batch, in_channels, size, size]` at integer timesteps `t` `[batch]`
    /// (in `0..steps`; a float `t` is truncated, so samplers round first) for labels `y`
    /// `[batch]` (in `0..=num_classes`, `num_classes` being the null label; `None` means the
    /// null label, which a net without its row cannot take). An unconditional ViT ignores `y`.
    /// Returns `[batch, out_channels, size, size]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor, y: Option<&Tensor>) -> Tensor {
        let patches = self.patch_embed.forward(x).flatten(2, -1).transpose(1, 2);
        let mut tokens = vec![self.time_embedding.forward(&t.to_kind(Kind::Int64)).unsqueeze(1)];
        if let Some(classes) = &self.class_embedding {
            tokens.push(classes.forward(&self.labels(y, x.size()[0], x.device())).unsqueeze(1));
        }
        tokens.push(patches);
        let h = Tensor::cat(&tokens, 1) + &self.pos_embed;
        let h = self.blocks.iter().fold(h, |h, block| block.forward(&h));
        let h =
            self.linear_projection.forward(&h.narrow(1, self.cfg.extra_tokens(), self.cfg.grid() * self.cfg.grid()));
        self.unpatchify(&h)
    }

    /// The labels as int64, or the null label `num_classes` for every sample.
    fn labels(&self, y: Option<&Tensor>, batch: i64, device: tch::Device) -> Tensor {
        match y {
            Some(y) => y.to_kind(Kind::Int64),
            None => Tensor::full([batch], self.cfg.num_classes, (Kind::Int64, device)),
        }
    }

    /// `[b, g*g, p*p*c]` to `[b, c, g*p, g*p]`: the seed's `einsum('nhwpqc->nchpwq')`.
    fn unpatchify(&self, tokens: &Tensor) -> Tensor {
        let (batch, _, _) = dims3(tokens);
        let (g, p, c) = (self.cfg.grid(), self.cfg.patch, self.cfg.out_channels);
        tokens.reshape([batch, g, g, p, p, c]).permute([0, 5, 1, 3, 2, 4]).reshape([batch, c, g * p, g * p])
    }
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    fn tiny(num_classes: i64) -> (nn::VarStore, ViT) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let vit = ViT::new(vs.root(), ViTConfig { num_classes, ..ViTConfig::tiny() });
        (vs, vit)
    }

    #[test]
    fn output_has_the_input_shape() {
        let (_vs, vit) = tiny(10);
        let x = Tensor::randn([3, 4, 8, 8], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 10, 999]);
        assert_eq!(vit.forward(&x, &t, Some(&Tensor::from_slice(&[1i64, 2, 10]))).size(), [3, 4, 8, 8]);
    }

    #[test]
    fn missing_labels_mean_the_null_label() {
        let (_vs, vit) = tiny(10);
        let x = Tensor::randn([2, 4, 8, 8], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[5i64, 6]);
        let null = vit.forward(&x, &t, Some(&Tensor::from_slice(&[10i64, 10])));
        assert_eq!(vit.forward(&x, &t, None), null);
        assert_ne!(vit.forward(&x, &t, Some(&Tensor::from_slice(&[3i64, 3]))), null);
    }

    #[test]
    fn unpatchify_inverts_patch_order() {
        let (_vs, vit) = tiny(0);
        // token (gy, gx) holds the values (py, px, c) of the patch at row gy, column gx.
        let img = Tensor::arange(4 * 8 * 8, (Kind::Float, Device::Cpu)).reshape([1, 4, 8, 8]);
        let tokens = img.reshape([1, 4, 4, 2, 4, 2]).permute([0, 2, 4, 3, 5, 1]).reshape([1, 16, 16]);
        assert_eq!(vit.unpatchify(&tokens), img);
    }

    #[test]
    fn takes_the_seeds_table_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ViTConfig { time_rows: Some(4000), null_class: false, ..ViTConfig::tiny() };
        let vit = ViT::new(vs.root(), cfg);
        let vars = vs.variables();
        assert_eq!(vars["time_embedding.weight"].size(), [4000, 64]);
        assert_eq!(vars["class_embedding.weight"].size(), [10, 64]);
        let x = Tensor::randn([2, 4, 8, 8], (Kind::Float, Device::Cpu));
        let y = vit.forward(&x, &Tensor::from_slice(&[0i64, 999]), Some(&Tensor::from_slice(&[0i64, 9])));
        assert_eq!(y.size(), [2, 4, 8, 8]);
    }

    #[test]
    fn the_front_ends_parameter_shapes_are_the_nets() {
        for cfg in [
            ViTConfig::tiny(),
            ViTConfig { num_classes: 0, ..ViTConfig::tiny() },
            ViTConfig { time_rows: Some(4000), null_class: false, patch: 4, in_channels: 3, ..ViTConfig::tiny() },
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = ViT::new(vs.root(), cfg.clone());
            let ours: std::collections::BTreeMap<String, Vec<i64>> =
                vs.variables().into_iter().map(|(name, t)| (name, t.size())).collect();
            assert_eq!(ours, cfg.parameter_shapes(), "{cfg:?}");
        }
    }

    #[test]
    fn seed_vit_b2_has_the_seeds_parameter_count() {
        // The seed's ViT-B/2 as its training script builds it (num_steps = 4000, 1001 class
        // rows): 89,109,520 parameters; with T rows, 86,805,520 (issue 11).
        let count = |cfg: ViTConfig| {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = ViT::new(vs.root(), cfg);
            vs.trainable_variables().iter().map(Tensor::numel).sum::<usize>()
        };
        assert_eq!(count(ViTConfig { time_rows: Some(4000), ..ViTConfig::base() }), 89_109_520);
        assert_eq!(count(ViTConfig::base()), 86_805_520);
    }

    #[test]
    fn parameter_count_matches_the_shapes() {
        let (vs, vit) = tiny(10);
        let count: usize = vs.trainable_variables().iter().map(Tensor::numel).sum();
        // embed 4*2*2*64+64, pos 18*64, time 1000*64, class 11*64, head 64*16+16, 2 blocks of 49920.
        assert_eq!(count, 1088 + 1152 + 64_000 + 704 + 1040 + 2 * 49_920);
        assert_eq!(vit.config().num_classes, 10);
    }
}
