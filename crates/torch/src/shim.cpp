// The libtorch calls msnr needs that tch 0.24 does not bind (see shim.rs). Each function
// catches C++ exceptions and reports them through `err` (a buffer of `err_len` bytes,
// NUL-terminated), returning 0; 1 means success.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <dlfcn.h>

#include <cstring>
#include <exception>

#include "shim_error.h"

namespace {
using msnr_shim::fail;
}  // namespace

// Enters CUDA autocast with dtype bf16 (else fp16), as `torch.autocast("cuda", dtype)`'s
// __enter__ does; returns whether autocast was enabled before and writes the dtype it had to
// *prev_dtype (a c10::ScalarType), both for msnr_autocast_exit.
extern "C" int msnr_autocast_enter(int bf16, int* prev_dtype) {
  bool prev = at::autocast::is_autocast_enabled(at::kCUDA);
  *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(at::kCUDA));
  at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
  return prev ? 1 : 0;
}

// Leaves autocast as `torch.autocast.__exit__` does: the cast cache is cleared when the
// outermost region ends (the weights change before the next forward), and the enabled flag
// and dtype are what they were before the region.
extern "C" void msnr_autocast_exit(int prev, int prev_dtype) {
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(at::kCUDA, prev != 0);
  at::autocast::set_autocast_dtype(at::kCUDA, static_cast<at::ScalarType>(prev_dtype));
}

// Whether CUDA autocast is on for this thread; *bf16: whether its dtype is bfloat16.
extern "C" int msnr_autocast_state(int* bf16) {
  *bf16 = at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16 ? 1 : 0;
  return at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0;
}

// `t.pin_memory()` without the deprecated device argument tch always passes.
extern "C" int msnr_pin_memory(const at::Tensor* t, at::Tensor** out, char* err, size_t err_len) {
  try {
    *out = new at::Tensor(t->pin_memory());
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// One AdamW update of a single (flat) parameter tensor with ATen's fused kernel, the one
// `torch.optim.AdamW(fused=True)` calls: `step` is a float32 tensor holding the step count
// (already incremented), as PyTorch keeps `state["step"]` for the fused path.
extern "C" int msnr_fused_adamw(at::Tensor* param, at::Tensor* grad, at::Tensor* exp_avg, at::Tensor* exp_avg_sq,
                                at::Tensor* step, double lr, double beta1, double beta2, double weight_decay,
                                double eps, char* err, size_t err_len) {
  try {
    at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step}, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// Starts libtorch's Kineto profiler (CPU operators and CUDA kernels), as `torch.profiler.profile`
// does; msnr_profile_stop writes the Chrome trace.
extern "C" int msnr_profile_start(char* err, size_t err_len) {
  try {
    namespace impl = torch::profiler::impl;
    impl::ProfilerConfig config(impl::ProfilerState::KINETO);
    std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
    if (at::hasCUDA()) {
      activities.insert(impl::ActivityType::CUDA);
    }
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

extern "C" int msnr_profile_stop(const char* path, char* err, size_t err_len) {
  try {
    torch::autograd::profiler::disableProfiler()->save(path);
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// `t.grad = None`: drops a variable's gradient (tch can only zero it).
extern "C" void msnr_clear_grad(at::Tensor* t) { t->mutable_grad() = at::Tensor(); }

// The free and total bytes of the current CUDA device (`cudaMemGetInfo`), looked up at run
// time in the CUDA runtime that libtorch_cuda loaded, so that a CPU-only libtorch links too.
// Returns 0 when there is no runtime or the call fails (no driver, no device).
extern "C" int msnr_cuda_mem_info(size_t* free_bytes, size_t* total_bytes) {
  using MemGetInfo = int (*)(size_t*, size_t*);
  auto mem_get_info = reinterpret_cast<MemGetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  return mem_get_info != nullptr && mem_get_info(free_bytes, total_bytes) == 0 ? 1 : 0;
}
