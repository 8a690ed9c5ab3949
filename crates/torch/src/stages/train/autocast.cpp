// Sets the dtype of libtorch's CUDA autocast, which tch 0.24 does not bind
// (its `tch::autocast` always uses libtorch's default, float16).
#include <ATen/autocast_mode.h>

extern "C" void msnr_set_cuda_autocast_dtype(int bf16) {
  at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
}
