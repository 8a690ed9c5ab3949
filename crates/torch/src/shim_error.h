// The shim's error convention, shared by shim.cpp and shim_c10d.cpp: a function that caught a
// C++ exception copies its message into `err` (a buffer of `err_len` bytes, NUL-terminated)
// and returns 0; 1 means success.
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>

namespace msnr_shim {
inline int fail(const std::exception& e, char* err, size_t err_len) {
  if (err_len > 0) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 0;
}
}  // namespace msnr_shim
