//! The ADM UNet's hyper-parameters (guided-diffusion `UNetModel`) and their
//! validation. No libtorch: `msnr check` validates with it.

use super::error::ModelError;
use super::rules::{check_data, divisors, positive};

/// Channels per group of every `GroupNorm32` (guided-diffusion `nn.normalization`).
pub const GROUPS: i64 = 32;

/// Hyper-parameters of the ADM UNet (Dhariwal & Nichol 2021; guided-diffusion `UNetModel`).
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    /// Side of the square input in pixels (or latent cells).
    pub image_size: i64,
    /// Input channels (1, 3 or 4).
    pub in_channels: i64,
    /// Output channels; equal to `in_channels` for a denoiser (ADM's `learn_sigma` doubles it).
    pub out_channels: i64,
    /// Base channel count (`model_channels`); times each multiplier must be a multiple of 32.
    pub model_channels: i64,
    /// Channel multiplier per level (`channel_mult`); level `l` runs at `image_size / 2^l`.
    pub channel_mult: Vec<i64>,
    /// Residual blocks per level on the way down (`num_res_blocks`; one more on the way up).
    pub num_res_blocks: i64,
    /// Resolutions in pixels that get self-attention, converted to downsample rates as
    /// ADM's `script_util` does (`image_size // res`). The middle block always has attention.
    pub attention_resolutions: Vec<i64>,
    /// Attention heads (`num_heads`), ignored when `num_head_channels` is set.
    pub num_heads: i64,
    /// Fixed channels per head (`num_head_channels`); `None` is ADM's -1.
    pub num_head_channels: Option<i64>,
    /// Dropout rate in the residual blocks, active in training only.
    pub dropout: f64,
    /// FiLM conditioning: the timestep embedding scales and shifts the normalized features.
    pub use_scale_shift_norm: bool,
    /// Residual blocks instead of plain layers for up- and downsampling.
    pub resblock_updown: bool,
    /// Learned 3x3 convolutions for resampling (else nearest upsampling / 2x2 average pooling).
    pub conv_resample: bool,
    /// Number of classes; 0 = unconditional. A conditional net embeds `num_classes + 1`
    /// labels (`label_emb`), the last one being the null label for classifier-free guidance
    /// (ADM has `num_classes` rows: pad its `label_emb.weight` with one row to load it).
    pub num_classes: i64,
}

impl Default for UNetConfig {
    /// msnr's `unet {}` defaults on 32x32 RGB, unconditional.
    fn default() -> Self {
        Self {
            image_size: 32,
            in_channels: 3,
            out_channels: 3,
            model_channels: 128,
            channel_mult: vec![1, 2, 2, 2],
            num_res_blocks: 2,
            attention_resolutions: vec![16],
            num_heads: 4,
            num_head_channels: None,
            dropout: 0.0,
            use_scale_shift_norm: true,
            resblock_updown: false,
            conv_resample: true,
            num_classes: 0,
        }
    }
}

impl UNetConfig {
    /// The seed paper's ablation UNet (192 channels, mults 1,2,2,2, 3 res blocks,
    /// attention at 16 and 8) on 64x64 RGB.
    #[must_use]
    pub fn paper_ablation() -> Self {
        let base = Self { image_size: 64, model_channels: 192, num_res_blocks: 3, ..Self::default() };
        Self { attention_resolutions: vec![16, 8], ..base }
    }

    /// A tiny UNet for tests: 16x16x3, 32 channels, mults 1,2, attention at 8, 2 heads, 10 classes.
    #[must_use]
    pub fn tiny() -> Self {
        let base =
            Self { image_size: 16, model_channels: 32, channel_mult: vec![1, 2], num_res_blocks: 1, ..Self::default() };
        Self { attention_resolutions: vec![8], num_heads: 2, num_classes: 10, ..base }
    }

    /// Width of the timestep embedding (`time_embed_dim = 4 * model_channels`).
    #[must_use]
    pub fn emb_channels(&self) -> i64 {
        4 * self.model_channels
    }

    /// The side of each level's feature maps: `image_size / 2^l`.
    #[must_use]
    pub fn level_sizes(&self) -> Vec<i64> {
        std::iter::successors(Some(self.image_size), |s| Some(s / 2)).take(self.channel_mult.len()).collect()
    }

    /// Whether level `level` (downsample rate `2^level`) has attention.
    #[must_use]
    pub fn attends_at(&self, level: usize) -> bool {
        self.level_sizes().get(level).is_some_and(|s| self.attention_resolutions.contains(s))
    }

    /// Heads of an attention layer over `channels` channels.
    #[must_use]
    pub fn heads_for(&self, channels: i64) -> i64 {
        self.num_head_channels.map_or(self.num_heads, |hc| channels / hc)
    }

    /// Checks that the network can be built.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the `net.*` or `data.*` parameter at fault.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_data(self.image_size, self.in_channels)?;
        self.validate_widths()?;
        positive("out_channels", self.out_channels)?;
        self.check_downsampling()?;
        self.check_attention()?;
        self.check_heads()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::invalid("net.dropout", format!("{} is not in [0, 1)", self.dropout)));
        }
        if self.num_classes < 0 {
            return Err(ModelError::invalid("num_classes", format!("{} is negative", self.num_classes)));
        }
        Ok(())
    }

    /// The rules that hold whatever the data's shape (what `msnr check` can say about a
    /// dataset whose shape is known only at run time): positive widths, multipliers and
    /// channel counts GroupNorm can split.
    ///
    /// # Errors
    /// [`ModelError::Invalid`] naming the `net.*` parameter at fault.
    pub fn validate_widths(&self) -> Result<(), ModelError> {
        positive("net.channels", self.model_channels)?;
        positive("net.res_blocks", self.num_res_blocks)?;
        self.check_mults()?;
        self.check_groups()
    }

    /// At least one level, every multiplier positive.
    fn check_mults(&self) -> Result<(), ModelError> {
        if self.channel_mult.is_empty() {
            return Err(ModelError::invalid("net.mults", "needs at least one level"));
        }
        match self.channel_mult.iter().find(|m| **m < 1) {
            Some(m) => Err(ModelError::invalid("net.mults", format!("multiplier {m} is not positive"))),
            None => Ok(()),
        }
    }

    /// Every feature width is a multiple of 32, as `GroupNorm32` needs.
    fn check_groups(&self) -> Result<(), ModelError> {
        if self.model_channels % GROUPS != 0 {
            let msg = format!("{} is not a multiple of {GROUPS} (GroupNorm uses {GROUPS} groups)", self.model_channels);
            return Err(ModelError::invalid("net.channels", msg));
        }
        Ok(())
    }

    /// Every level but the last halves an even size: ADM's stride-2 downsampling of an odd
    /// size rounds up, and the 2x upsampling on the way back then misses the skip's size.
    fn check_downsampling(&self) -> Result<(), ModelError> {
        let sizes = self.level_sizes();
        let Some(level) = sizes[..sizes.len() - 1].iter().position(|s| s % 2 != 0) else { return Ok(()) };
        let msg = format!(
            "{} levels halve the {}x{} input {} times, but level {level} is {}x{}, odd; {} allows at most {} levels",
            sizes.len(),
            self.image_size,
            self.image_size,
            sizes.len() - 1,
            sizes[level],
            sizes[level],
            self.image_size,
            level + 1
        );
        Err(ModelError::invalid("net.mults", msg))
    }

    /// Every attention resolution is one of the levels' sizes.
    fn check_attention(&self) -> Result<(), ModelError> {
        let sizes = self.level_sizes();
        match self.attention_resolutions.iter().find(|r| !sizes.contains(r)) {
            Some(r) => {
                let msg = format!("resolution {r} is not one of the UNet's resolutions {sizes:?}");
                Err(ModelError::invalid("net.attention", msg))
            }
            None => Ok(()),
        }
    }

    /// The heads (or head width) divide the channels of every attention layer.
    fn check_heads(&self) -> Result<(), ModelError> {
        let (param, per) = match self.num_head_channels {
            Some(hc) => ("net.head_channels", hc),
            None => ("net.heads", self.num_heads),
        };
        positive(param, per)?;
        let last = self.channel_mult.len() - 1;
        let attended = (0..=last).filter(|l| *l == last || self.attends_at(*l));
        for channels in attended.map(|l| self.model_channels * self.channel_mult[l]) {
            if channels % per != 0 {
                let msg = format!("{per} does not divide the {channels} channels of an attention layer");
                return Err(ModelError::invalid(param, format!("{msg}; use one of {:?}", divisors(channels))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(cfg: &UNetConfig) -> (String, String) {
        cfg.validate().unwrap_err().into_param()
    }

    #[test]
    fn presets_are_valid() {
        UNetConfig::default().validate().unwrap();
        UNetConfig::paper_ablation().validate().unwrap();
        UNetConfig::tiny().validate().unwrap();
    }

    #[test]
    fn mnist_28_with_three_levels_is_fine() {
        let cfg = UNetConfig { image_size: 28, in_channels: 1, channel_mult: vec![1, 2, 2], ..UNetConfig::default() };
        assert_eq!(cfg.level_sizes(), vec![28, 14, 7]);
        let cfg = UNetConfig { attention_resolutions: vec![7], ..cfg };
        cfg.validate().unwrap();
        assert!(!cfg.attends_at(0) && cfg.attends_at(2));
    }

    #[test]
    fn an_odd_size_before_a_downsample_is_rejected() {
        let cfg = UNetConfig { image_size: 28, attention_resolutions: vec![], ..UNetConfig::default() };
        let (param, msg) = error_of(&cfg);
        assert_eq!(param, "net.mults");
        assert!(msg.contains("level 2 is 7x7, odd; 28 allows at most 3 levels"), "{msg}");
    }

    #[test]
    fn attention_must_be_a_level_resolution() {
        let cfg = UNetConfig { image_size: 28, channel_mult: vec![1, 2, 2], ..UNetConfig::default() };
        let (param, msg) = error_of(&cfg);
        assert_eq!(param, "net.attention");
        assert!(msg.contains("resolution 16 is not one of the UNet's resolutions [28, 14, 7]"), "{msg}");
    }

    #[test]
    fn channels_must_suit_groupnorm32() {
        let (param, msg) = error_of(&UNetConfig { model_channels: 48, ..UNetConfig::default() });
        assert_eq!(param, "net.channels");
        assert!(msg.contains("multiple of 32"), "{msg}");
    }

    #[test]
    fn heads_must_divide_attention_channels() {
        assert_eq!(error_of(&UNetConfig { num_heads: 3, ..UNetConfig::default() }).0, "net.heads");
        let cfg = UNetConfig { num_head_channels: Some(48), ..UNetConfig::default() };
        assert_eq!(error_of(&cfg).0, "net.head_channels");
        assert_eq!(UNetConfig { num_head_channels: Some(64), ..UNetConfig::default() }.heads_for(256), 4);
    }

    #[test]
    fn other_ranges() {
        assert_eq!(error_of(&UNetConfig { dropout: 1.0, ..UNetConfig::default() }).0, "net.dropout");
        assert_eq!(error_of(&UNetConfig { channel_mult: vec![], ..UNetConfig::default() }).0, "net.mults");
        assert_eq!(error_of(&UNetConfig { channel_mult: vec![1, 0], ..UNetConfig::default() }).0, "net.mults");
        assert_eq!(error_of(&UNetConfig { num_res_blocks: 0, ..UNetConfig::default() }).0, "net.res_blocks");
        assert_eq!(error_of(&UNetConfig { in_channels: 0, ..UNetConfig::default() }).0, "data.channels");
    }
}
