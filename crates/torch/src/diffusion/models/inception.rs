//! pytorch-fid's FID Inception-v3 (`pytorch_fid/inception.py`: `fid_inception_v3` inside
//! `InceptionV3([3], resize_input=True, normalize_input=True)`): torchvision's
//! `Inception3` with 1008 classes, no auxiliary head, and the FID blocks of [`blocks`],
//! the port of TensorFlow's `inception-2015-12-05` graph that FID is defined on.
//!
//! Parameter names are torchvision's, so `pt_inception-2015-12-05-6726825d.pth` loads
//! as it is ([`load_inception`]): `Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`,
//! ..., `fc.weight`. The network only ever runs in eval mode: batch norm uses its
//! running statistics (eps 0.001, torchvision's `BasicConv2d`).

mod blocks;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;

use tch::nn::{self, Init, VarStore};
use tch::{Device, Kind, Tensor};

use msnr::nets::ModelError;

pub use self::blocks::{BranchPool, FidInceptionA, FidInceptionC, FidInceptionE, InceptionB, InceptionD};
use super::weights::load_state_dict;

/// Width of the pool3 features (the final average pool) that FID and KID compare.
pub const FEATURES: i64 = 2048;
/// Classes of the fc layer: TensorFlow's graph has 1008 outputs (1000 + 8 unused).
pub const CLASSES: i64 = 1008;
/// Side of the square input the network was trained on; images are resized to it.
pub const INPUT_SIZE: i64 = 299;
/// torchvision's `BasicConv2d`: `nn.BatchNorm2d(out_channels, eps=0.001)`.
const BN_EPS: f64 = 0.001;

/// Images that cannot be turned into Inception inputs.
#[derive(Debug, thiserror::Error)]
pub enum InceptionError {
    /// Not `[N, C, H, W]` with C = 1 (repeated to RGB) or 3.
    #[error("Inception features need images [N, C, H, W] with 1 or 3 channels, found shape {0:?}")]
    Shape(Vec<i64>),
    /// Neither `uint8` (0..255) nor a float kind (values in [0, 1]).
    #[error("Inception features need uint8 images or float images in [0, 1], found {0:?}")]
    Kind(Kind),
    /// A batch size below 1.
    #[error("Inception batch size must be at least 1, found {0}")]
    Batch(i64),
}

/// torchvision's `BasicConv2d`: `conv` (no bias), `bn` (eps 0.001, running statistics) and ReLU.
///
/// The forward pass folds the batch norm into the convolution:
/// `bn(conv(x, w)) = conv(x, w * s) + (beta - mean * s)` with `s = gamma / sqrt(var + eps)`
/// per output channel, the same function as PyTorch's two steps up to float rounding, one
/// pass over the activations fewer. Folding on every call keeps it right after a load.
#[derive(Debug)]
pub struct BasicConv2d {
    /// `conv.weight`: `[out, in, kh, kw]`.
    pub weight: Tensor,
    /// `bn.weight` (gamma).
    pub bn_weight: Tensor,
    /// `bn.bias` (beta).
    pub bn_bias: Tensor,
    /// `bn.running_mean`.
    pub running_mean: Tensor,
    /// `bn.running_var`.
    pub running_var: Tensor,
    stride: i64,
    padding: [i64; 2],
}

impl BasicConv2d {
    /// `BasicConv2d(cin, cout, kernel_size=kernel, stride=stride, padding=padding)` under `vs`;
    /// weights are meant to be loaded (the fresh ones are N(0, 0.1), torchvision's scale).
    #[must_use]
    pub fn new(vs: &nn::Path, cin: i64, cout: i64, kernel: [i64; 2], stride: i64, padding: [i64; 2]) -> Self {
        let (conv, bn) = (vs / "conv", vs / "bn");
        Self {
            weight: conv.var("weight", &[cout, cin, kernel[0], kernel[1]], Init::Randn { mean: 0.0, stdev: 0.1 }),
            bn_weight: bn.var("weight", &[cout], Init::Const(1.0)),
            bn_bias: bn.var("bias", &[cout], Init::Const(0.0)),
            running_mean: bn.zeros_no_train("running_mean", &[cout]),
            running_var: bn.ones_no_train("running_var", &[cout]),
            stride,
            padding,
        }
    }

    /// A square `k x k` kernel with the same padding on both sides.
    #[must_use]
    pub fn square(vs: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> Self {
        Self::new(vs, cin, cout, [k, k], stride, [padding, padding])
    }

    /// `relu(bn(conv(x)))`, eval mode, with the batch norm folded into the convolution.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let scale = &self.bn_weight * (&self.running_var + BN_EPS).rsqrt();
        let weight = &self.weight * scale.view([-1, 1, 1, 1]);
        let bias = &self.bn_bias - &self.running_mean * &scale;
        x.conv2d(&weight, Some(&bias), [self.stride, self.stride], self.padding, [1, 1], 1).relu_()
    }
}

/// The FID Inception-v3. Field `conv2d_1a_3x3` holds checkpoint prefix `Conv2d_1a_3x3`,
/// `mixed_5b` holds `Mixed_5b`, and so on.
#[derive(Debug)]
#[allow(missing_docs)] // fields are the checkpoint's module names in snake case
pub struct FidInceptionV3 {
    pub conv2d_1a_3x3: BasicConv2d,
    pub conv2d_2a_3x3: BasicConv2d,
    pub conv2d_2b_3x3: BasicConv2d,
    pub conv2d_3b_1x1: BasicConv2d,
    pub conv2d_4a_3x3: BasicConv2d,
    pub mixed_5b: FidInceptionA,
    pub mixed_5c: FidInceptionA,
    pub mixed_5d: FidInceptionA,
    pub mixed_6a: InceptionB,
    pub mixed_6b: FidInceptionC,
    pub mixed_6c: FidInceptionC,
    pub mixed_6d: FidInceptionC,
    pub mixed_6e: FidInceptionC,
    pub mixed_7a: InceptionD,
    pub mixed_7b: FidInceptionE,
    pub mixed_7c: FidInceptionE,
    /// `fc`: the 1008-way classifier, unused by the features but part of the checkpoint.
    pub fc: nn::Linear,
    device: Device,
}

impl FidInceptionV3 {
    /// pytorch-fid's `fid_inception_v3()` without its download: the layers under `vs`.
    #[must_use]
    pub fn new(vs: &nn::Path) -> Self {
        let conv = |name: &str, cin, cout, k, stride, pad| BasicConv2d::square(&(vs / name), cin, cout, k, stride, pad);
        Self {
            conv2d_1a_3x3: conv("Conv2d_1a_3x3", 3, 32, 3, 2, 0),
            conv2d_2a_3x3: conv("Conv2d_2a_3x3", 32, 32, 3, 1, 0),
            conv2d_2b_3x3: conv("Conv2d_2b_3x3", 32, 64, 3, 1, 1),
            conv2d_3b_1x1: conv("Conv2d_3b_1x1", 64, 80, 1, 1, 0),
            conv2d_4a_3x3: conv("Conv2d_4a_3x3", 80, 192, 3, 1, 0),
            mixed_5b: FidInceptionA::new(&(vs / "Mixed_5b"), 192, 32),
            mixed_5c: FidInceptionA::new(&(vs / "Mixed_5c"), 256, 64),
            mixed_5d: FidInceptionA::new(&(vs / "Mixed_5d"), 288, 64),
            mixed_6a: InceptionB::new(&(vs / "Mixed_6a"), 288),
            mixed_6b: FidInceptionC::new(&(vs / "Mixed_6b"), 768, 128),
            mixed_6c: FidInceptionC::new(&(vs / "Mixed_6c"), 768, 160),
            mixed_6d: FidInceptionC::new(&(vs / "Mixed_6d"), 768, 160),
            mixed_6e: FidInceptionC::new(&(vs / "Mixed_6e"), 768, 192),
            mixed_7a: InceptionD::new(&(vs / "Mixed_7a"), 768),
            mixed_7b: FidInceptionE::new(&(vs / "Mixed_7b"), 1280, BranchPool::Avg),
            mixed_7c: FidInceptionE::new(&(vs / "Mixed_7c"), 2048, BranchPool::Max),
            fc: nn::linear(vs / "fc", FEATURES, CLASSES, nn::LinearConfig::default()),
            device: vs.device(),
        }
    }

    /// pytorch-fid's blocks 0 and 1: the stem convolutions and both max pools (192 channels).
    pub fn stem(&self, x: &Tensor) -> Tensor {
        let pool = |x: Tensor| x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        let x = self.conv2d_2a_3x3.forward(&self.conv2d_1a_3x3.forward(x));
        let x = pool(self.conv2d_2b_3x3.forward(&x));
        pool(self.conv2d_4a_3x3.forward(&self.conv2d_3b_1x1.forward(&x)))
    }

    /// The pool3 features `[N, 2048]` of network inputs `x` (`[N, 3, H, W]`, in [-1, 1]):
    /// pytorch-fid's blocks 0 to 3, ending in `AdaptiveAvgPool2d((1, 1))`.
    pub fn pool3(&self, x: &Tensor) -> Tensor {
        let x = self.stem(x);
        let x = self.mixed_5d.forward(&self.mixed_5c.forward(&self.mixed_5b.forward(&x)));
        let x = self.mixed_6b.forward(&self.mixed_6a.forward(&x));
        let x = self.mixed_6e.forward(&self.mixed_6d.forward(&self.mixed_6c.forward(&x)));
        let x = self.mixed_7c.forward(&self.mixed_7b.forward(&self.mixed_7a.forward(&x)));
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// The 1008 class logits of pool3 features (torchvision's `fc`; dropout is off in eval).
    pub fn logits(&self, features: &Tensor) -> Tensor {
        nn::Module::forward(&self.fc, features)
    }

    /// FID features `[N, 2048]` (float32) of `images` as pytorch-fid computes them:
    /// [`preprocess`], then [`Self::pool3`], without gradients, on the network's device.
    ///
    /// The activations are laid out channels-last (NHWC strides, the same values; every
    /// layer keeps its input's layout): oneDNN's CPU convolutions run ~25% faster so
    /// (pytorch-fid's model on 16 images, 2 threads: 12.3-14.9 s NCHW, 9.2-10.4 s NHWC).
    ///
    /// # Errors
    /// [`InceptionError`] when `images` are not `[N, 1 or 3, H, W]` uint8 or float.
    pub fn features(&self, images: &Tensor) -> Result<Tensor, InceptionError> {
        let x = preprocess(&images.to_device(self.device))?;
        let x = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        Ok(tch::no_grad(|| self.pool3(&x)))
    }

    /// [`Self::features`] of `images` (`[N, C, H, W]`, on any device, e.g. all of a dataset
    /// on the CPU) `batch` at a time, gathered on the CPU; `done(k)` after each batch with the
    /// images done so far. Memory on the network's device is bounded by `batch`.
    ///
    /// # Errors
    /// As [`Self::features`], and [`InceptionError::Batch`] for a batch size below 1.
    pub fn features_batched(
        &self,
        images: &Tensor,
        batch: i64,
        done: &mut dyn FnMut(i64),
    ) -> Result<Tensor, InceptionError> {
        if batch < 1 {
            return Err(InceptionError::Batch(batch));
        }
        let n = images.size().first().copied().unwrap_or(0);
        let mut parts = Vec::new();
        for start in (0..n).step_by(usize::try_from(batch).unwrap_or(1)) {
            let len = batch.min(n - start);
            parts.push(self.features(&images.narrow(0, start, len))?.to_device(Device::Cpu));
            done(start + len);
        }
        if parts.is_empty() {
            check(images)?; // the same errors for an empty set
            return Ok(Tensor::zeros([0, FEATURES], (Kind::Float, Device::Cpu)));
        }
        Ok(Tensor::cat(&parts, 0))
    }
}

/// Images to network inputs, as pytorch-fid: uint8 to [0, 1] (`ToTensor`: x / 255), one
/// channel repeated to RGB (as PIL's `convert('RGB')`), `F.interpolate(size=(299, 299),
/// mode='bilinear', align_corners=False)` (`resize_input`), then `2 x - 1` (`normalize_input`).
///
/// # Errors
/// [`InceptionError`] when `images` are not `[N, 1 or 3, H, W]` uint8 or float.
pub fn preprocess(images: &Tensor) -> Result<Tensor, InceptionError> {
    check(images)?;
    let x = match images.kind() {
        Kind::Uint8 => images.to_kind(Kind::Float) / 255.0,
        Kind::Float => images.shallow_clone(),
        _ => images.to_kind(Kind::Float),
    };
    let x = if images.size()[1] == 1 { x.repeat([1, 3, 1, 1]) } else { x };
    let x = x.upsample_bilinear2d([INPUT_SIZE, INPUT_SIZE], false, None, None);
    Ok(x * 2.0 - 1.0)
}

/// Images [`preprocess`] takes: `[N, 1 or 3, H, W]`, uint8 or a float kind.
fn check(images: &Tensor) -> Result<(), InceptionError> {
    let size = images.size();
    if size.len() != 4 || !(size[1] == 1 || size[1] == 3) {
        return Err(InceptionError::Shape(size));
    }
    match images.kind() {
        Kind::Uint8 | Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => Ok(()),
        other => Err(InceptionError::Kind(other)),
    }
}

/// Loads a state dict (e.g. read from `pt_inception-2015-12-05-6726825d.pth`) into `vs`,
/// strictly as `load_state_dict(strict=True)` except that batch norm's `num_batches_tracked`
/// counters, which eval mode never reads, may be present or not.
///
/// # Errors
/// [`ModelError::Weights`] listing missing, unexpected and misshapen tensors, naming `source`.
pub fn load_inception<S: BuildHasher>(
    vs: &VarStore,
    mut tensors: HashMap<String, Tensor, S>,
    source: &Path,
) -> Result<(), ModelError> {
    tensors.retain(|name, _| !name.ends_with(".num_batches_tracked"));
    load_state_dict(vs, &tensors, source)
}

/// [`load_inception`] from a safetensors file.
///
/// # Errors
/// [`ModelError::Read`] when `path` cannot be read, else as [`load_inception`].
pub fn load_inception_safetensors(vs: &VarStore, path: &Path) -> Result<(), ModelError> {
    let read = |e: tch::TchError| ModelError::Read { path: path.to_path_buf(), message: e.to_string() };
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(path).map_err(read)?.into_iter().collect();
    load_inception(vs, tensors, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_and_count_are_pytorch_fids() {
        let vs = VarStore::new(Device::Cpu);
        let _net = FidInceptionV3::new(&vs.root());
        let vars = vs.variables();
        // fid_inception_v3().state_dict(): 566 tensors, 94 of them num_batches_tracked counters.
        let total: usize = vars.values().map(Tensor::numel).sum();
        assert_eq!(vars.len(), 94 * 5 + 2);
        for name in [
            "Conv2d_1a_3x3.conv.weight",
            "Mixed_5b.branch5x5_2.bn.running_var",
            "Mixed_7c.branch3x3dbl_3b.conv.weight",
            "fc.bias",
        ] {
            assert!(vars.contains_key(name), "{name}");
        }
        assert_eq!(vars["Mixed_6b.branch7x7dbl_2.conv.weight"].size(), [128, 128, 7, 1]);
        assert_eq!(total, 23_885_392);
    }

    #[test]
    fn preprocess_resizes_scales_and_repeats_gray() {
        let gray = Tensor::full([2, 1, 5, 7], 255, (Kind::Uint8, Device::Cpu));
        let x = preprocess(&gray).unwrap();
        assert_eq!(x.size(), [2, 3, INPUT_SIZE, INPUT_SIZE]);
        // A constant image stays constant up to the interpolation weights' rounding (libtorch's
        // one-thread and many-thread bilinear kernels sum their weights in different orders).
        assert!(x.allclose(&x.ones_like(), 1e-6, 1e-6, false), "{}", x.max());
        let zeros = preprocess(&Tensor::zeros([1, 3, 299, 299], (Kind::Float, Device::Cpu))).unwrap();
        assert!(zeros.allclose(&-zeros.ones_like(), 1e-6, 1e-6, false));
    }

    #[test]
    fn bad_images_are_errors() {
        let err = preprocess(&Tensor::zeros([1, 4, 8, 8], (Kind::Float, Device::Cpu))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Inception features need images [N, C, H, W] with 1 or 3 channels, found shape [1, 4, 8, 8]"
        );
        assert!(matches!(
            preprocess(&Tensor::zeros([3, 8, 8], (Kind::Float, Device::Cpu))),
            Err(InceptionError::Shape(_))
        ));
        assert!(matches!(
            preprocess(&Tensor::zeros([1, 3, 8, 8], (Kind::Int64, Device::Cpu))),
            Err(InceptionError::Kind(Kind::Int64))
        ));
    }

    #[test]
    fn batched_features_of_no_images_are_empty_or_errors() {
        let vs = VarStore::new(Device::Cpu);
        let net = FidInceptionV3::new(&vs.root());
        let none = Tensor::zeros([0, 3, 8, 8], (Kind::Uint8, Device::Cpu));
        assert_eq!(net.features_batched(&none, 4, &mut |_| ()).unwrap().size(), [0, FEATURES]);
        let four = Tensor::zeros([0, 4, 8, 8], (Kind::Uint8, Device::Cpu));
        assert!(matches!(net.features_batched(&four, 4, &mut |_| ()), Err(InceptionError::Shape(_))));
        assert!(matches!(net.features_batched(&none, 0, &mut |_| ()), Err(InceptionError::Batch(0))));
    }
}
