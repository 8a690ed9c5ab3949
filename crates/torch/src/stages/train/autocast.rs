//! Mixed precision on CUDA: libtorch's autocast with a chosen dtype (bf16 or
//! fp16). tch's `autocast` enables autocast but cannot choose the dtype, so a
//! one-function C++ shim (`autocast.cpp`, compiled by the build script) sets it.

use tch::Tensor;

use super::config::Precision;

extern "C" {
    fn msnr_set_cuda_autocast_dtype(bf16: i32);
}

/// Runs `f` (a forward pass) under autocast at `precision`; fp32 runs it as is.
pub fn forward(precision: Precision, f: impl FnOnce() -> Tensor) -> Tensor {
    match precision {
        Precision::Fp32 => f(),
        Precision::Bf16 | Precision::Fp16 => {
            // SAFETY: sets a thread-local libtorch setting; no pointers are passed.
            unsafe { msnr_set_cuda_autocast_dtype(i32::from(precision == Precision::Bf16)) };
            tch::autocast(true, f)
        }
    }
}
