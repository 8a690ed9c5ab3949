//! The seed paper's ViT hyper-parameters, their presets and their validation.
//! No libtorch: `msnr check` validates with it.

use std::collections::BTreeMap;

use super::error::ModelError;
use super::rules::{check_data, divisors, positive};

/// Hyper-parameters of the seed paper's ViT (Hang et al. 2023, Table 1 sizes).
#[derive(Clone, Debug, PartialEq)]
pub struct ViTConfig {
    /// Side of the square input, in pixels or latent cells (32 for ImageNet-256 latents).
    pub image_size: i64,
    /// Input channels (4 for SD-VAE latents, 3 for RGB, 1 for MNIST).
    pub in_channels: i64,
    /// Output channels; equal to `in_channels` for a denoiser (the seed's `learn_sigma` doubles it).
    pub out_channels: i64,
    /// Side of a square patch; must divide `image_size`.
    pub patch: i64,
    /// Token width (the seed's `embed_dim`).
    pub width: i64,
    /// Number of transformer blocks.
    pub depth: i64,
    /// Attention heads per block; must divide `width`.
    pub heads: i64,
    /// MLP hidden width as a multiple of `width` (the seed uses 4).
    pub mlp_ratio: f64,
    /// Number of classes; 0 = unconditional. A conditional net embeds `num_classes + 1`
    /// labels when [`ViTConfig::null_class`] (the last one being the null label used for
    /// classifier-free guidance), else `num_classes`.
    pub num_classes: i64,
    /// Number of discrete timesteps T of the schedule the net is used with.
    pub steps: i64,
    /// Rows of the learned timestep-embedding table; `None` means T. The seed's training
    /// and sampling scripts never set its `num_steps`, so its checkpoints hold 4000 rows
    /// (`VisionTransformer(num_steps=4000)`), of which timesteps `0..T` use the first T.
    pub time_rows: Option<i64>,
    /// Whether a conditional net has the null label's row. The seed adds it only when
    /// training with label dropout (`nn.Embedding(num_classes + int(drop_label_prob > 0))`).
    pub null_class: bool,
}

impl Default for ViTConfig {
    /// ViT-B/2 on ImageNet-256 latents (32x32x4), 1000 classes, T = 1000: the seed setup.
    fn default() -> Self {
        Self {
            image_size: 32,
            in_channels: 4,
            out_channels: 4,
            patch: 2,
            width: 768,
            depth: 12,
            heads: 12,
            mlp_ratio: 4.0,
            num_classes: 1000,
            steps: 1000,
            time_rows: None,
            null_class: true,
        }
    }
}

impl ViTConfig {
    /// ViT-S/2 on 32x32x4 latents: depth 13, width 512, 8 heads.
    #[must_use]
    pub fn small() -> Self {
        Self { depth: 13, width: 512, heads: 8, ..Self::default() }
    }

    /// ViT-B/2 on 32x32x4 latents: depth 12, width 768, 12 heads.
    #[must_use]
    pub fn base() -> Self {
        Self::default()
    }

    /// ViT-L/2 on 32x32x4 latents: depth 21, width 1024, 16 heads.
    #[must_use]
    pub fn large() -> Self {
        Self { depth: 21, width: 1024, heads: 16, ..Self::default() }
    }

    /// ViT-XL/2 on 32x32x4 latents: depth 28, width 1152, 16 heads.
    #[must_use]
    pub fn xlarge() -> Self {
        Self { depth: 28, width: 1152, heads: 16, ..Self::default() }
    }

    /// A tiny ViT for tests: 8x8x4 input, patch 2, width 64, depth 2, 4 heads, 10 classes.
    #[must_use]
    pub fn tiny() -> Self {
        Self { image_size: 8, width: 64, depth: 2, heads: 4, num_classes: 10, ..Self::default() }
    }

    /// Patches per side.
    #[must_use]
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch
    }

    /// Tokens before the patches: the timestep, and the class when conditional.
    #[must_use]
    pub fn extra_tokens(&self) -> i64 {
        if self.num_classes > 0 {
            2
        } else {
            1
        }
    }

    /// Rows of the timestep-embedding table: [`ViTConfig::time_rows`], or T.
    #[must_use]
    pub fn time_table_rows(&self) -> i64 {
        self.time_rows.unwrap_or(self.steps)
    }

    /// Rows of the class-embedding table: `num_classes`, plus the null label's row when
    /// [`ViTConfig::null_class`]; 0 when unconditional.
    #[must_use]
    pub fn class_rows(&self) -> i64 {
        if self.num_classes > 0 {
            self.num_classes + i64::from(self.null_class)
        } else {
            0
        }
    }

    /// The null label (classifier-free guidance, label dropout), when the net has its row.
    #[must_use]
    pub fn null_label(&self) -> Option<i64> {
        (self.num_classes > 0 && self.null_class).then_some(self.num_classes)
    }

    /// Every parameter's name and shape as the network (and the seed's state dict) names
    /// them, so a weight file can be matched against it without libtorch.
    #[must_use]
    pub fn parameter_shapes(&self) -> BTreeMap<String, Vec<i64>> {
        let (w, hidden, out) = (self.width, self.mlp_hidden(), self.patch * self.patch * self.out_channels);
        let tokens = self.extra_tokens() + self.grid() * self.grid();
        let mut shapes = BTreeMap::from([
            ("patch_embed.proj.weight".to_owned(), vec![w, self.in_channels, self.patch, self.patch]),
            ("patch_embed.proj.bias".to_owned(), vec![w]),
            ("pos_embed".to_owned(), vec![1, tokens, w]),
            ("time_embedding.weight".to_owned(), vec![self.time_table_rows(), w]),
            ("linear_projection.weight".to_owned(), vec![out, w]),
            ("linear_projection.bias".to_owned(), vec![out]),
        ]);
        if self.num_classes > 0 {
            shapes.insert("class_embedding.weight".to_owned(), vec![self.class_rows(), w]);
        }
        for i in 0..self.depth {
            let block = [
                ("norm1.weight", vec![w]),
                ("norm1.bias", vec![w]),
                ("attn.qkv.weight", vec![3 * w, w]),
                ("attn.q_bias", vec![w]),
                ("attn.v_bias", vec![w]),
                ("attn.proj.weight", vec![w, w]),
                ("attn.proj.bias", vec![w]),
                ("norm2.weight", vec![w]),
                ("norm2.bias", vec![w]),
                ("mlp.fc1.weight", vec![hidden, w]),
                ("mlp.fc1.bias", vec![hidden]),
                ("mlp.fc2.weight", vec![w, hidden]),
                ("mlp.fc2.bias", vec![w]),
            ];
            shapes.extend(block.into_iter().map(|(name, shape)| (format!("blocks.{i}.{name}"), shape)));
        }
        shapes
    }

    /// Width of the MLP's hidden layer: `int(width * mlp_ratio)` as the seed computes it.
    #[must_use]
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    pub fn mlp_hidden(&self) -> i64 {
        (self.width as f64 * self.mlp_ratio) as i64
    }

    /// The rules that hold whatever the data's shape: positive sizes, heads dividing the width.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the `net.*` parameter at fault.
    pub fn validate_widths(&self) -> Result<(), ModelError> {
        positive("net.depth", self.depth)?;
        positive("net.width", self.width)?;
        positive("net.heads", self.heads)?;
        positive("net.patch", self.patch)?;
        if self.width % self.heads != 0 {
            let msg = format!("{} heads do not divide the width {}", self.heads, self.width);
            return Err(ModelError::invalid("net.heads", format!("{msg}; use one of {:?}", divisors(self.width))));
        }
        Ok(())
    }

    /// Checks that the network can be built.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the `net.*` or `data.*` parameter at fault.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_data(self.image_size, self.in_channels)?;
        self.validate_widths()?;
        positive("out_channels", self.out_channels)?;
        positive("steps", self.steps)?;
        if self.time_table_rows() < self.steps {
            let msg = format!(
                "{} rows cannot embed the schedule's {} timesteps; use at least {} (or 0: one per timestep)",
                self.time_table_rows(),
                self.steps,
                self.steps
            );
            return Err(ModelError::invalid("net.time_rows", msg));
        }
        if self.image_size % self.patch != 0 {
            let msg = format!("patch {} does not divide the image size {}", self.patch, self.image_size);
            return Err(ModelError::invalid("net.patch", format!("{msg}; use one of {:?}", divisors(self.image_size))));
        }
        if self.num_classes < 0 {
            return Err(ModelError::invalid("num_classes", format!("{} is negative", self.num_classes)));
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_hidden() >= 1) {
            return Err(ModelError::invalid("net.mlp_ratio", format!("{} gives no hidden units", self.mlp_ratio)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(cfg: &ViTConfig) -> String {
        cfg.validate().unwrap_err().into_param().0
    }

    #[test]
    fn presets_are_valid_and_match_the_paper() {
        for (cfg, depth, width, heads) in [
            (ViTConfig::small(), 13, 512, 8),
            (ViTConfig::base(), 12, 768, 12),
            (ViTConfig::large(), 21, 1024, 16),
            (ViTConfig::xlarge(), 28, 1152, 16),
        ] {
            assert_eq!((cfg.depth, cfg.width, cfg.heads, cfg.patch), (depth, width, heads, 2));
            cfg.validate().unwrap();
        }
        ViTConfig::tiny().validate().unwrap();
    }

    #[test]
    fn patch_must_divide_the_image() {
        let cfg = ViTConfig { patch: 3, ..ViTConfig::default() };
        let (param, msg) = cfg.validate().unwrap_err().into_param();
        assert_eq!(param, "net.patch");
        assert!(msg.contains("patch 3 does not divide the image size 32"), "{msg}");
        assert!(msg.contains("[1, 2, 4, 8, 16, 32]"), "{msg}");
    }

    #[test]
    fn heads_must_divide_the_width() {
        assert_eq!(param_of(&ViTConfig { heads: 7, ..ViTConfig::default() }), "net.heads");
    }

    #[test]
    fn sizes_must_be_positive() {
        assert_eq!(param_of(&ViTConfig { depth: 0, ..ViTConfig::default() }), "net.depth");
        assert_eq!(param_of(&ViTConfig { patch: 0, ..ViTConfig::default() }), "net.patch");
        assert_eq!(param_of(&ViTConfig { image_size: 0, ..ViTConfig::default() }), "data.image_size");
        assert_eq!(param_of(&ViTConfig { mlp_ratio: 0.0, ..ViTConfig::default() }), "net.mlp_ratio");
    }

    #[test]
    fn the_time_table_holds_at_least_one_row_per_timestep() {
        let cfg = ViTConfig { time_rows: Some(4000), ..ViTConfig::default() };
        assert_eq!(cfg.time_table_rows(), 4000);
        cfg.validate().unwrap();
        let short = ViTConfig { time_rows: Some(999), ..ViTConfig::default() };
        let (param, msg) = short.validate().unwrap_err().into_param();
        assert_eq!(param, "net.time_rows");
        assert!(msg.contains("999 rows cannot embed the schedule's 1000 timesteps"), "{msg}");
        assert_eq!(ViTConfig::default().time_table_rows(), 1000);
    }

    #[test]
    fn the_null_class_row_is_optional() {
        let cfg = ViTConfig::default();
        assert_eq!((cfg.class_rows(), cfg.null_label()), (1001, Some(1000)));
        let seed = ViTConfig { null_class: false, ..ViTConfig::default() };
        assert_eq!((seed.class_rows(), seed.null_label()), (1000, None));
        assert_eq!(ViTConfig { num_classes: 0, ..cfg }.class_rows(), 0);
    }

    #[test]
    fn tokens_and_hidden_width() {
        let cfg = ViTConfig::tiny();
        assert_eq!((cfg.grid(), cfg.extra_tokens(), cfg.mlp_hidden()), (4, 2, 256));
        assert_eq!(ViTConfig { num_classes: 0, ..cfg }.extra_tokens(), 1);
    }
}
