//! Mixed precision on CUDA: libtorch's autocast in bf16 or fp16 (through [`crate::shim`],
//! since tch's `autocast` cannot choose the dtype).

use tch::Tensor;

use super::config::Precision;

/// Runs `f` (a forward pass) under autocast at `precision`; fp32 runs it as is.
pub fn forward(precision: Precision, f: impl FnOnce() -> Tensor) -> Tensor {
    match precision {
        Precision::Fp32 => f(),
        Precision::Bf16 | Precision::Fp16 => crate::shim::autocast(precision == Precision::Bf16, f),
    }
}
