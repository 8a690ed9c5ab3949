// c10d's NCCL process group, for data-parallel training on several GPUs (see shim/c10d.rs),
// as `torch.distributed.init_process_group("nccl")` builds it. Compiled only where the CUDA
// headers it needs are installed (build.rs: the wheel's CUDA runtime headers, plus
// nvidia-cuda-crt and nvidia-cuda-cccl from PyPI, and nccl.h from the wheel's
// nvidia-nccl), with -DUSE_C10D_NCCL -DUSE_CUDA; the class itself is in libtorch_cuda.
// Returned as a pointer to its c10d::Backend base, as shim_c10d.cpp's Gloo group, so that
// group's all-reduce and free apply. Errors as in shim.cpp.
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>
#include <exception>

#include "shim_error.h"

// An NCCL process group of `world` ranks, this one `rank` (its GPU is that of the tensors it
// reduces), meeting through `store`; collectives time out after `timeout_ms`.
extern "C" int msnr_nccl_new(void* store, int rank, int world, int64_t timeout_ms, void** out, char* err,
                             size_t err_len) {
  try {
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto& s = *static_cast<c10::intrusive_ptr<c10d::Store>*>(store);
    c10::intrusive_ptr<c10d::Backend> group = c10::make_intrusive<c10d::ProcessGroupNCCL>(s, rank, world, opts);
    *out = new c10::intrusive_ptr<c10d::Backend>(group);
    return 1;
  } catch (const std::exception& e) {
    return msnr_shim::fail(e, err, err_len);
  }
}
