//! The classifier network: a `LeNet`-sized CNN (`LeCun` et al. 1998, with ReLU, max pooling
//! and an adaptive pool so any image side of at least 4 works): `conv1` 3x3 (32) ->
//! ReLU -> max-pool 2, `conv2` 3x3 (64) -> ReLU -> max-pool 2, adaptive average pool to
//! 4x4, `fc1` (1024 -> 128) -> ReLU = the features, `fc2` (128 -> classes) = the logits.

use tch::nn::{self, Module};
use tch::Tensor;

/// Width of the feature layer.
pub const FEATURES: i64 = 128;

/// The classifier's layers; parameter names are the field names (`conv1.weight`, ...).
#[derive(Debug)]
pub struct LeNet {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl LeNet {
    /// A classifier of `channels`-channel images into `classes` classes under `vs`.
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, classes: i64) -> Self {
        let conv = nn::ConvConfig { padding: 1, ..nn::ConvConfig::default() };
        Self {
            conv1: nn::conv2d(vs / "conv1", channels, 32, 3, conv),
            conv2: nn::conv2d(vs / "conv2", 32, 64, 3, conv),
            fc1: nn::linear(vs / "fc1", 64 * 16, FEATURES, nn::LinearConfig::default()),
            fc2: nn::linear(vs / "fc2", FEATURES, classes, nn::LinearConfig::default()),
        }
    }

    /// The 128-d features of images `x` (`[n, c, h, w]`, float in [-1, 1]).
    pub fn features(&self, x: &Tensor) -> Tensor {
        let h = self.conv1.forward(x).relu().max_pool2d_default(2);
        let h = self.conv2.forward(&h).relu().max_pool2d_default(2);
        let h = h.adaptive_avg_pool2d([4, 4]).flatten(1, -1);
        self.fc1.forward(&h).relu()
    }

    /// The class logits of images `x`.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.features(x))
    }
}
