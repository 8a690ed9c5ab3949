//! The libtorch calls msnr needs that tch 0.24 does not bind, through a small C++ file
//! (`shim.cpp`, compiled by the build script against the same libtorch headers):
//!
//! - CUDA autocast with a chosen dtype (tch's `autocast` can only enable libtorch's default,
//!   float16, and calls API that libtorch 2.11 deprecates with a warning on every call);
//! - `pin_memory` without the deprecated device argument (the same warning, every step);
//! - `p.grad = None` (tch can only zero a gradient, which keeps its memory);
//! - `ATen`'s fused `AdamW` kernel (`torch.optim.AdamW(fused=True)`'s `_fused_adamw_`);
//! - libtorch's Kineto profiler (for the benchmarks: a Chrome trace like `torch.profiler`'s);
//! - the CUDA device's free memory (`cudaMemGetInfo`, for `train`'s automatic loader);
//! - c10d's store, Gloo process group and all-reduce, for data-parallel training ([`c10d`]),
//!   and gradient buckets all-reduced during the backward pass ([`reducer`]).

pub mod c10d;
pub mod reducer;

use std::ffi::{c_char, c_int, c_void, CStr};

use tch::{TchError, Tensor};

extern "C" {
    fn msnr_autocast_enter(bf16: c_int, prev_dtype: *mut c_int) -> c_int;
    fn msnr_autocast_exit(prev: c_int, prev_dtype: c_int);
    fn msnr_autocast_state(bf16: *mut c_int) -> c_int;
    fn msnr_clear_grad(t: *mut c_void);
    fn msnr_cuda_mem_info(free: *mut usize, total: *mut usize) -> c_int;
    fn msnr_profile_start(err: *mut c_char, err_len: usize) -> c_int;
    fn msnr_profile_stop(path: *const c_char, err: *mut c_char, err_len: usize) -> c_int;
    fn msnr_pin_memory(t: *const c_void, out: *mut *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    #[allow(clippy::too_many_arguments)] // mirrors ATen's signature
    fn msnr_fused_adamw(
        param: *mut c_void,
        grad: *mut c_void,
        exp_avg: *mut c_void,
        exp_avg_sq: *mut c_void,
        step: *mut c_void,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Runs `f` under CUDA autocast in bf16 (`bf16`) or fp16, as `with torch.autocast("cuda",
/// dtype)`: nested regions are allowed, the cast cache is cleared when the outermost one ends,
/// and the previous state (on or off, and the dtype) is restored even if `f` panics. CPU
/// tensors are unaffected.
pub fn autocast<T>(bf16: bool, f: impl FnOnce() -> T) -> T {
    /// Leaves the region on drop, so a panic inside `f` does not leave autocast on.
    struct Region {
        enabled: c_int,
        dtype: c_int,
    }
    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: thread-local libtorch state; no pointers.
            unsafe { msnr_autocast_exit(self.enabled, self.dtype) };
        }
    }
    let mut dtype = 0;
    // SAFETY: thread-local libtorch state; `dtype` is a live local.
    let enabled = unsafe { msnr_autocast_enter(c_int::from(bf16), &raw mut dtype) };
    let _region = Region { enabled, dtype };
    f()
}

/// Whether CUDA autocast is on for this thread, and whether its dtype is bf16 (else fp16 or
/// another).
#[must_use]
pub fn autocast_state() -> (bool, bool) {
    let mut bf16 = 0;
    // SAFETY: thread-local libtorch state; `bf16` is a live local.
    let enabled = unsafe { msnr_autocast_state(&raw mut bf16) } != 0;
    (enabled, bf16 != 0)
}

/// A copy of the CPU tensor `t` in page-locked memory, so that a `non_blocking` copy to
/// CUDA does not make the host wait.
///
/// # Errors
/// What libtorch reports, e.g. when no CUDA driver is present.
pub fn pin_memory(t: &Tensor) -> Result<Tensor, TchError> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: `t` outlives the call.
    checked(|err, len| unsafe { msnr_pin_memory(t.as_ptr().cast(), &raw mut out, err, len) })?;
    // SAFETY: on success `out` is a heap `at::Tensor` owned by the returned Tensor, which frees
    // it with `delete` as tch does for its own tensors.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

/// The free bytes of the current CUDA device, or `None` without a CUDA runtime or device.
#[must_use]
pub fn cuda_free_memory() -> Option<u64> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: both pointers are live locals the call writes to.
    let ok = unsafe { msnr_cuda_mem_info(&raw mut free, &raw mut total) } != 0;
    ok.then(|| u64::try_from(free).unwrap_or(u64::MAX))
}

/// Drops `var`'s gradient (Python's `var.grad = None`), freeing its memory.
pub fn clear_grad(var: &Tensor) {
    // SAFETY: `var` outlives the call; resetting its gradient does not touch its data.
    unsafe { msnr_clear_grad(var.as_ptr().cast_mut().cast()) };
}

/// `AdamW` hyperparameters of one fused step.
#[derive(Debug, Clone, Copy)]
pub struct FusedAdamW {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Denominator epsilon.
    pub eps: f64,
}

/// One `AdamW` update of `param` in place with `ATen`'s fused kernel (one launch over the flat
/// buffers), updating the moments; `step` is a float32 tensor on the same device holding the
/// 1-based step count of this update.
///
/// # Errors
/// What libtorch reports (e.g. tensors on different devices or of different sizes).
pub fn fused_adamw(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: &Tensor,
    h: FusedAdamW,
) -> Result<(), TchError> {
    // ATen's CPU kernel trusts the sizes: check them here.
    for (name, t) in [("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)] {
        if t.size() != param.size() || t.device() != param.device() {
            return Err(TchError::Shape(format!(
                "fused AdamW: {name} is {:?} on {:?}, the parameter {:?} on {:?}",
                t.size(),
                t.device(),
                param.size(),
                param.device()
            )));
        }
    }
    let ptr = |t: &Tensor| t.as_ptr().cast_mut().cast::<c_void>();
    // SAFETY: every tensor outlives the call; the kernel writes only into the tensors' storage.
    checked(|err, len| unsafe {
        msnr_fused_adamw(
            ptr(param),
            ptr(grad),
            ptr(exp_avg),
            ptr(exp_avg_sq),
            ptr(step),
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
            err,
            len,
        )
    })
}

/// Starts libtorch's profiler (CPU operators, and CUDA kernels where CUDA is present) for
/// this process until [`profile_stop`].
///
/// # Errors
/// What libtorch reports (e.g. a profiler already running).
pub fn profile_start() -> Result<(), TchError> {
    // SAFETY: only the error buffer is passed.
    checked(|err, len| unsafe { msnr_profile_start(err, len) })
}

/// Stops the profiler and writes its Chrome trace (the format `torch.profiler`'s
/// `export_chrome_trace` writes) to `path`.
///
/// # Errors
/// A path that is not valid UTF-8 without NULs, no running profiler, or the file not written.
pub fn profile_stop(path: &std::path::Path) -> Result<(), TchError> {
    let bad = || TchError::FileFormat(format!("{}: not a usable trace path", path.display()));
    let c_path = std::ffi::CString::new(path.to_str().ok_or_else(bad)?).map_err(|_| bad())?;
    // SAFETY: `c_path` outlives the call; the shim only reads it.
    checked(|err, len| unsafe { msnr_profile_stop(c_path.as_ptr(), err, len) })
}

/// Runs a shim call with an error buffer; its return value 0 becomes the message the shim
/// wrote there, as an error.
fn checked(call: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), TchError> {
    let mut err = [0 as c_char; 512];
    if call(err.as_mut_ptr(), err.len()) != 0 {
        return Ok(());
    }
    // SAFETY: the shim always NUL-terminates within the buffer (and the buffer starts zeroed).
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
    Err(TchError::Torch(msg.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn autocast_regions_nest_and_restore_flag_and_dtype() {
        // The thread's CUDA autocast state is kept by libtorch even without a GPU.
        let before = autocast_state();
        assert!(!before.0, "off outside any region");
        let (outer, inner, after_inner) = autocast(true, || {
            let inner = autocast(false, autocast_state);
            (autocast_state(), inner, autocast_state())
        });
        assert_eq!(inner, (true, false), "the inner region runs in fp16");
        assert_eq!(outer, (true, true));
        assert_eq!(after_inner, (true, true), "leaving the inner region restores bf16");
        assert_eq!(autocast_state(), before, "and leaving the outer one, the state before");
        // A panic inside a region still leaves it.
        let _ = std::panic::catch_unwind(|| autocast(true, || panic!("inside")));
        assert_eq!(autocast_state(), before);
        // CPU tensors are untouched by CUDA autocast.
        let x = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        assert_eq!(autocast(true, || x.matmul(&x)).kind(), Kind::Float);
    }

    #[test]
    fn the_profiler_writes_a_chrome_trace_of_the_operators() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.json");
        profile_start().unwrap();
        let x = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
        let _ = x.matmul(&x).sum(Kind::Float);
        profile_stop(&path).unwrap();
        let trace = std::fs::read_to_string(&path).unwrap();
        assert!(trace.contains("traceEvents") && trace.contains("aten::mm"), "{}", &trace[..trace.len().min(500)]);
    }

    #[test]
    fn the_gpu_memory_is_known_exactly_where_cuda_is() {
        let free = cuda_free_memory();
        assert_eq!(free.is_some(), tch::Cuda::is_available(), "{free:?}");
        assert!(free.is_none_or(|bytes| bytes > 0));
    }

    #[test]
    fn bad_arguments_are_errors_not_aborts() {
        let h = FusedAdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, weight_decay: 0.0, eps: 1e-8 };
        let step = Tensor::ones([], (Kind::Float, Device::Cpu));
        let p = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let short = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let err = fused_adamw(&p, &short, &p.zeros_like(), &p.zeros_like(), &step, h).unwrap_err();
        assert!(err.to_string().contains("grad is [3]"), "{err}");
        // An exception thrown inside libtorch comes back as its message.
        let ints = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let err = fused_adamw(&ints, &ints, &ints, &ints, &step, h).unwrap_err().to_string();
        assert!(!err.is_empty(), "libtorch's message is kept");
    }
}
