//! The classifier network: a `LeNet`-sized CNN (`LeCun` et al. 1998) in the VGG manner
//! (Simonyan & Zisserman 2015): two blocks of two 3x3 convolutions, each followed by
//! batch normalization (Ioffe & Szegedy 2015) and ReLU, then a 2x2 max-pool; an adaptive
//! average pool to 4x4 so any image side of at least 4 works; `fc1` (16 x 32 -> 128) ->
//! ReLU = the features; dropout; `fc2` (128 -> classes) = the logits. About 85k
//! parameters. The prototype this was chosen by, and its held-out accuracies, are in
//! `benches/classifier_recipe.py`.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// Width of the feature layer.
pub const FEATURES: i64 = 128;

/// Channels of the first block (the second has twice as many).
const WIDTH: i64 = 16;

/// Dropout before the head, in training only.
const DROPOUT: f64 = 0.3;

/// The classifier's layers; parameter names are the field names (`conv1a.weight`,
/// `bn1a.running_mean`, ...).
#[derive(Debug)]
pub struct LeNet {
    conv1a: nn::Conv2D,
    bn1a: nn::BatchNorm,
    conv1b: nn::Conv2D,
    bn1b: nn::BatchNorm,
    conv2a: nn::Conv2D,
    bn2a: nn::BatchNorm,
    conv2b: nn::Conv2D,
    bn2b: nn::BatchNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl LeNet {
    /// A classifier of `channels`-channel images into `classes` classes under `vs`.
    #[must_use]
    pub fn new(vs: &nn::Path, channels: i64, classes: i64) -> Self {
        let conv = |name: &str, from: i64, to: i64| {
            nn::conv2d(vs / name, from, to, 3, nn::ConvConfig { padding: 1, ..nn::ConvConfig::default() })
        };
        let bn = |name: &str, c: i64| nn::batch_norm2d(vs / name, c, nn::BatchNormConfig::default());
        Self {
            conv1a: conv("conv1a", channels, WIDTH),
            bn1a: bn("bn1a", WIDTH),
            conv1b: conv("conv1b", WIDTH, WIDTH),
            bn1b: bn("bn1b", WIDTH),
            conv2a: conv("conv2a", WIDTH, 2 * WIDTH),
            bn2a: bn("bn2a", 2 * WIDTH),
            conv2b: conv("conv2b", 2 * WIDTH, 2 * WIDTH),
            bn2b: bn("bn2b", 2 * WIDTH),
            fc1: nn::linear(vs / "fc1", 2 * WIDTH * 16, FEATURES, nn::LinearConfig::default()),
            fc2: nn::linear(vs / "fc2", FEATURES, classes, nn::LinearConfig::default()),
        }
    }

    /// The 128-d features of images `x` (`[n, c, h, w]`, float in [-1, 1]); `train` uses
    /// the batch's statistics (and updates the running ones), otherwise the running ones.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        let unit = |h: &Tensor, conv: &nn::Conv2D, bn: &nn::BatchNorm| bn.forward_t(&conv.forward(h), train).relu();
        let h = unit(&unit(x, &self.conv1a, &self.bn1a), &self.conv1b, &self.bn1b).max_pool2d_default(2);
        let h = unit(&unit(&h, &self.conv2a, &self.bn2a), &self.conv2b, &self.bn2b).max_pool2d_default(2);
        let h = h.adaptive_avg_pool2d([4, 4]).flatten(1, -1);
        self.fc1.forward(&h).relu()
    }

    /// The class logits of images `x` (see [`LeNet::features_t`] for `train`).
    pub fn logits_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.fc2.forward(&self.features_t(x, train).dropout(DROPOUT, train))
    }

    /// The features for scoring (running statistics, no dropout).
    pub fn features(&self, x: &Tensor) -> Tensor {
        self.features_t(x, false)
    }

    /// The logits for scoring.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.logits_t(x, false)
    }
}
