//! Layer constructors initialized as PyTorch initializes them, so a freshly built
//! network starts from the reference's distribution (tch's defaults differ: Kaiming
//! with a ReLU gain and zero biases).

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use msnr::nets::unet::GROUPS;

/// PyTorch's `reset_parameters` for `Linear` and `ConvNd`: `kaiming_uniform_(a=sqrt(5))`
/// on the weight and U(-b, b) on the bias, both with `b = 1/sqrt(fan_in)`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn torch_default(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// Zero weights and biases: guided-diffusion's `zero_module`.
pub(crate) const ZERO: Init = Init::Const(0.0);

/// `nn.Linear(fan_in, out)` with PyTorch's initialization, or `init` for both tensors.
pub(crate) fn linear(vs: &nn::Path, fan_in: i64, out: i64, init: Option<Init>) -> nn::Linear {
    let init = init.unwrap_or_else(|| torch_default(fan_in));
    nn::linear(vs, fan_in, out, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

/// `nn.Conv2d(cin, cout, k, stride)` (no padding) with PyTorch's initialization.
pub(crate) fn conv2d(vs: &nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let init = torch_default(cin * k * k);
    nn::conv2d(vs, cin, cout, k, nn::ConvConfig { stride, ws_init: init, bs_init: init, ..Default::default() })
}

/// `nn.Conv2d(cin, cout, 3, stride, padding=1)` with PyTorch's initialization, or `init`.
pub(crate) fn conv3x3(vs: &nn::Path, cin: i64, cout: i64, stride: i64, init: Option<Init>) -> nn::Conv2D {
    let init = init.unwrap_or_else(|| torch_default(cin * 9));
    let cfg = nn::ConvConfig { stride, padding: 1, ws_init: init, bs_init: init, ..Default::default() };
    nn::conv2d(vs, cin, cout, 3, cfg)
}

/// `nn.Conv1d(cin, cout, 1)` with PyTorch's initialization, or `init`.
pub(crate) fn conv1x1(vs: &nn::Path, cin: i64, cout: i64, init: Option<Init>) -> nn::Conv1D {
    let init = init.unwrap_or_else(|| torch_default(cin));
    nn::conv1d(vs, cin, cout, 1, nn::ConvConfig { ws_init: init, bs_init: init, ..Default::default() })
}

/// guided-diffusion's `GroupNorm32`: 32 groups, eps 1e-5, computed in float32 (float64 inputs
/// stay float64, for float64 parity runs of a float64 net).
#[derive(Debug)]
pub(crate) struct GroupNorm32(nn::GroupNorm);

impl GroupNorm32 {
    /// A group norm over `channels` channels (a multiple of 32).
    pub(crate) fn new(vs: &nn::Path, channels: i64) -> Self {
        Self(nn::group_norm(vs, GROUPS, channels, nn::GroupNormConfig::default()))
    }

    /// `super().forward(x.float()).type(x.dtype)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        nn::Module::forward(&self.0, &at_least_f32(x)).to_kind(x.kind())
    }
}

/// `x` in float32 when narrower (half, bfloat16), else as it is: where the references
/// compute a norm in float32, a float64 net (parity tests) keeps float64.
pub(crate) fn at_least_f32(x: &Tensor) -> Tensor {
    match x.kind() {
        Kind::Double => x.shallow_clone(),
        _ => x.to_kind(Kind::Float),
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::Module;
    use tch::Device;

    use super::*;

    #[test]
    fn default_init_is_pytorchs_bound() {
        let vs = nn::VarStore::new(Device::Cpu);
        let l = linear(&vs.root(), 16, 400, None);
        let bound = l.ws.abs().max().double_value(&[]);
        assert!(bound <= 0.25 && bound > 0.2, "{bound}");
        assert!(l.bs.unwrap().abs().max().double_value(&[]) > 0.0);
        let c = conv3x3(&vs.root().sub("c"), 4, 8, 1, Some(ZERO));
        assert_eq!(c.ws, c.ws.zeros_like());
        assert_eq!(c.forward(&Tensor::ones([1, 4, 5, 5], (Kind::Float, Device::Cpu))).size(), [1, 8, 5, 5]);
    }

    #[test]
    fn group_norm_keeps_the_input_kind() {
        let vs = nn::VarStore::new(Device::Cpu);
        let gn = GroupNorm32::new(&vs.root(), 64);
        let x = Tensor::randn([2, 64, 3, 3], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        assert_eq!(gn.forward(&x).kind(), Kind::BFloat16);
    }
}
