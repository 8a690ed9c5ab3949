// c10d (torch.distributed's C++ core, inside libtorch_cpu) for data-parallel training: a
// TCPStore for the rendezvous, a Gloo process group over it, and the all-reduce of any c10d
// backend (this Gloo one, or shim_nccl.cpp's NCCL one; see shim/c10d.rs). Compiled with
// -DUSE_C10D_GLOO against the wheel's c10d headers and the gloo headers vendored in vendor/gloo
// (the wheel ships c10d's headers but not gloo's). Objects cross the C boundary as
// heap-allocated intrusive pointers; a process group as a pointer to its c10d::Backend base.
// Errors as in shim.cpp: 0 and a message in `err`, 1 on success.
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <exception>

#include "shim_error.h"

namespace {
using StorePtr = c10::intrusive_ptr<c10d::Store>;
using GroupPtr = c10::intrusive_ptr<c10d::Backend>;

using msnr_shim::fail;
}  // namespace

// A TCPStore on host:port; the server (rank 0) binds it (port 0: a free port, written to
// *port_out), the others connect to it. `world` ranks take part; `timeout_ms` bounds every wait.
extern "C" int msnr_store_new(const char* host, int port, int is_server, int world, int64_t timeout_ms,
                              void** out, int* port_out, char* err, size_t err_len) {
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(port);
    opts.isServer = is_server != 0;
    opts.numWorkers = world;
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(host, opts);
    *port_out = store->getPort();
    *out = new StorePtr(store);
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

extern "C" void msnr_store_free(void* store) { delete static_cast<StorePtr*>(store); }

// A Gloo process group of `world` ranks, this one `rank`, meeting through `store`, its
// transport bound to the address `host` resolves to, or to the interface `iface` when it is
// not empty (what GLOO_SOCKET_IFNAME names in PyTorch); collectives time out after
// `timeout_ms`. Blocks until every rank has joined (or the timeout).
extern "C" int msnr_gloo_new(void* store, const char* host, const char* iface, int rank, int world,
                             int64_t timeout_ms, void** out, char* err, size_t err_len) {
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    opts->devices.push_back(*iface != '\0' ? c10d::ProcessGroupGloo::createDeviceForInterface(iface)
                                            : c10d::ProcessGroupGloo::createDeviceForHostname(host));
    GroupPtr group = c10::make_intrusive<c10d::ProcessGroupGloo>(*static_cast<StorePtr*>(store), rank, world, opts);
    *out = new GroupPtr(group);
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

extern "C" void msnr_group_free(void* group) { delete static_cast<GroupPtr*>(group); }

// Sums `t` over the ranks in place (c10d's allreduce, ReduceOp::SUM) and waits for it.
extern "C" int msnr_group_allreduce_sum(void* group, at::Tensor* t, char* err, size_t err_len) {
  try {
    std::vector<at::Tensor> tensors{*t};
    (*static_cast<GroupPtr*>(group))->allreduce(tensors)->wait();
    return 1;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}
