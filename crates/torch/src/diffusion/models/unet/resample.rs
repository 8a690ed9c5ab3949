//! 2x resampling between UNet levels (guided-diffusion `Upsample`, `Downsample`):
//! nearest-neighbour upsampling, optionally followed by a 3x3 conv (`conv`); a stride-2
//! 3x3 conv (`op`), or 2x2 average pooling without learned weights.

use tch::nn::{self, Module};
use tch::Tensor;

use crate::diffusion::models::layers;

/// `F.interpolate(x, scale_factor=2, mode="nearest")`.
pub(crate) fn nearest_2x(x: &Tensor) -> Tensor {
    let s = x.size();
    x.upsample_nearest2d([s[2] * 2, s[3] * 2], 2.0, 2.0)
}

/// `nn.AvgPool2d(kernel_size=2, stride=2)`.
pub(crate) fn avg_pool_2x(x: &Tensor) -> Tensor {
    x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None)
}

/// `Upsample(channels, use_conv)`.
#[derive(Debug)]
pub struct Upsample {
    /// `conv`, when `use_conv`.
    conv: Option<nn::Conv2D>,
}

impl Upsample {
    /// Builds it under `vs` (`output_blocks.{i}.{j}`).
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, use_conv: bool) -> Self {
        Self { conv: use_conv.then(|| layers::conv3x3(&(vs / "conv"), channels, channels, 1, None)) }
    }

    /// `[b, c, h, w]` to `[b, c, 2h, 2w]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = nearest_2x(x);
        match &self.conv {
            Some(conv) => conv.forward(&h),
            None => h,
        }
    }
}

/// `Downsample(channels, use_conv)`.
#[derive(Debug)]
pub struct Downsample {
    /// `op`, when `use_conv`.
    op: Option<nn::Conv2D>,
}

impl Downsample {
    /// Builds it under `vs` (`input_blocks.{i}.0`).
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, use_conv: bool) -> Self {
        Self { op: use_conv.then(|| layers::conv3x3(&(vs / "op"), channels, channels, 2, None)) }
    }

    /// `[b, c, h, w]` to `[b, c, h/2, w/2]` (h, w even).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.op {
            Some(op) => op.forward(x),
            None => avg_pool_2x(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn resampling_shapes_and_values() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([1, 1, 2, 2]);
        let up = nearest_2x(&x);
        assert_eq!(up.size(), [1, 1, 4, 4]);
        assert_eq!(avg_pool_2x(&up), x);
        let vs = nn::VarStore::new(Device::Cpu);
        let down = Downsample::new(&vs.root(), 32, true);
        let x = Tensor::randn([2, 32, 14, 14], (Kind::Float, Device::Cpu));
        assert_eq!(down.forward(&x).size(), [2, 32, 7, 7]);
        assert_eq!(Upsample::new(&(vs.root() / "u"), 32, true).forward(&x).size(), [2, 32, 28, 28]);
    }
}
