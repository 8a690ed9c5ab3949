//! The VAE's building blocks, as diffusers defines them for `AutoencoderKL`:
//! `ResnetBlock2D` without a timestep (`resnet.py`), `Downsample2D` with padding 0
//! (`downsampling.py`), `Upsample2D` (`upsampling.py`), and the blocks that stack them
//! (`unet_2d_blocks.py`: `DownEncoderBlock2D`, `UpDecoderBlock2D`, `UNetMidBlock2D`).
//! Sub-module names equal diffusers' state-dict keys.

use tch::nn::{self, Module};
use tch::Tensor;

use super::attention::Attention;
use crate::diffusion::models::layers::{conv2d, conv3x3};

/// Every VAE norm's epsilon (`resnet_eps=1e-6` in diffusers' `Encoder`/`Decoder`).
pub(crate) const EPS: f64 = 1e-6;

/// `nn.GroupNorm(groups, channels, eps=1e-6)` with an affine transform.
pub(crate) fn group_norm(vs: &nn::Path, groups: i64, channels: i64) -> nn::GroupNorm {
    nn::group_norm(vs, groups, channels, nn::GroupNormConfig { eps: EPS, ..Default::default() })
}

/// `ResnetBlock2D` with `temb_channels=None`, `time_embedding_norm="default"`, output
/// scale 1: `x + conv2(silu(norm2(conv1(silu(norm1(x))))))`, `x` through a 1x1
/// `conv_shortcut` when the channels change.
#[derive(Debug)]
pub struct ResnetBlock2D {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
}

impl ResnetBlock2D {
    /// Builds it under `vs` (e.g. `encoder.down_blocks.0.resnets.1`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, cout: i64, groups: i64) -> Self {
        Self {
            norm1: group_norm(&(vs / "norm1"), groups, cin),
            conv1: conv3x3(&(vs / "conv1"), cin, cout, 1, None),
            norm2: group_norm(&(vs / "norm2"), groups, cout),
            conv2: conv3x3(&(vs / "conv2"), cout, cout, 1, None),
            conv_shortcut: (cin != cout).then(|| conv2d(&(vs / "conv_shortcut"), cin, cout, 1, 1)),
        }
    }

    /// `[b, cin, h, w]` to `[b, cout, h, w]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        match &self.conv_shortcut {
            Some(shortcut) => shortcut.forward(x) + h,
            None => x + h,
        }
    }
}

/// `UNetMidBlock2D` as the VAE uses it: resnet, attention (one head), resnet.
#[derive(Debug)]
pub struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Attention,
}

impl MidBlock {
    /// Builds it under `vs` (`encoder.mid_block`, `decoder.mid_block`).
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, groups: i64) -> Self {
        let resnets = vs / "resnets";
        Self {
            resnets: [0, 1].map(|i| ResnetBlock2D::new(&(&resnets / i), channels, channels, groups)),
            attention: Attention::new(&(vs / "attentions" / 0), channels, groups),
        }
    }

    /// `[b, c, h, w]` to the same shape.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.resnets[0].forward(x);
        self.resnets[1].forward(&self.attention.forward(&h))
    }
}

/// `DownEncoderBlock2D`: `layers` resnets, then (except in the last block) a
/// `Downsample2D` whose 3x3 stride-2 conv follows a zero pad on the right and bottom
/// (diffusers' `padding=0` case: `F.pad(x, (0, 1, 0, 1))`).
#[derive(Debug)]
pub struct DownEncoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    downsample: Option<nn::Conv2D>,
}

impl DownEncoderBlock2D {
    /// Builds it under `vs` (`encoder.down_blocks.<i>`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, cout: i64, layers: i64, groups: i64, downsample: bool) -> Self {
        let resnets = (0..layers)
            .map(|j| ResnetBlock2D::new(&(vs / "resnets" / j), if j == 0 { cin } else { cout }, cout, groups))
            .collect();
        let downsample = downsample.then(|| conv2d(&(vs / "downsamplers" / 0 / "conv"), cout, cout, 3, 2));
        Self { resnets, downsample }
    }

    /// `[b, cin, h, w]` to `[b, cout, h/2, w/2]` (or `h, w` without downsampling).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.resnets.iter().fold(x.shallow_clone(), |h, r| r.forward(&h));
        match &self.downsample {
            Some(conv) => conv.forward(&h.constant_pad_nd([0, 1, 0, 1])),
            None => h,
        }
    }
}

/// `UpDecoderBlock2D`: `layers` resnets, then (except in the last block) an
/// `Upsample2D`: nearest 2x, then a 3x3 conv.
#[derive(Debug)]
pub struct UpDecoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    upsample: Option<nn::Conv2D>,
}

impl UpDecoderBlock2D {
    /// Builds it under `vs` (`decoder.up_blocks.<i>`).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, cout: i64, layers: i64, groups: i64, upsample: bool) -> Self {
        let resnets = (0..layers)
            .map(|j| ResnetBlock2D::new(&(vs / "resnets" / j), if j == 0 { cin } else { cout }, cout, groups))
            .collect();
        let upsample = upsample.then(|| conv3x3(&(vs / "upsamplers" / 0 / "conv"), cout, cout, 1, None));
        Self { resnets, upsample }
    }

    /// `[b, cin, h, w]` to `[b, cout, 2h, 2w]` (or `h, w` without upsampling).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.resnets.iter().fold(x.shallow_clone(), |h, r| r.forward(&h));
        match &self.upsample {
            Some(conv) => {
                let size = h.size();
                conv.forward(&h.upsample_nearest2d([size[2] * 2, size[3] * 2], 2.0, 2.0))
            }
            None => h,
        }
    }
}
