// Gradient buckets all-reduced while the backward pass still runs, as PyTorch DDP's Reducer
// (torch/csrc/distributed/c10d/reducer.cpp) does: a post hook on each parameter's
// AccumulateGrad node copies the gradient into the flat buffer as soon as autograd has
// accumulated it, and once every parameter of a bucket is in, the bucket's all-reduce
// (c10d's allreduce_coalesced over the parameters' slices of the flat buffer) starts on the
// process group's own threads or stream. Buckets start in one order on every rank (the
// collectives must pair up): bucket k only after buckets 0..k-1. `finish` starts what is left
// and waits for all. See shim/reducer.rs. Errors as in shim.cpp.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shim_error.h"

namespace {
using GroupPtr = c10::intrusive_ptr<c10d::Backend>;

struct Reducer {
  GroupPtr group;
  std::vector<at::Tensor> vars;
  std::vector<int64_t> offsets;
  std::vector<size_t> bucket_of;             // var -> bucket
  std::vector<std::vector<size_t>> buckets;  // bucket -> vars, in launch order
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // kept alive, as DDP does
  std::mutex mutex;
  // One backward pass's state.
  bool armed = false;
  at::Tensor flat;
  std::vector<bool> ready;
  std::vector<size_t> order;    // vars in the order they became ready
  std::vector<size_t> pending;  // per bucket: vars not ready yet
  size_t next = 0;              // the next bucket to start
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::string error;

  // Starts buckets next, next + 1, ... while they are complete (the mutex held).
  void start_ready() {
    while (next < buckets.size() && pending[next] == 0) {
      std::vector<at::Tensor> slices;
      for (size_t v : buckets[next]) {
        slices.push_back(flat.narrow(0, offsets[v], vars[v].numel()));
      }
      works.push_back(group->allreduce_coalesced(slices));
      ++next;
    }
  }

  // Var `v`'s gradient has been accumulated.
  void on_ready(size_t v) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed) {
      return;
    }
    if (ready[v]) {
      error = "a parameter received its gradient twice in one backward pass (a parameter used twice, or a "
              "second backward); set MSNR_DDP_BUCKET_MB=0 to all-reduce after the backward pass";
      return;
    }
    ready[v] = true;
    order.push_back(v);
    at::NoGradGuard no_grad;
    auto& grad = vars[v].mutable_grad();
    if (grad.defined()) {
      flat.narrow(0, offsets[v], vars[v].numel()).view(vars[v].sizes()).copy_(grad);
      grad.reset();
    }
    if (--pending[bucket_of[v]] == 0) {
      start_ready();
    }
  }
};

// Holds its reducer weakly: the reducer holds the accumulators (and so their hooks), and a
// graph built before the reducer was freed may still run its accumulators after.
struct ReadyHook : torch::autograd::FunctionPostHook {
  std::weak_ptr<Reducer> reducer;
  size_t var;
  ReadyHook(std::weak_ptr<Reducer> r, size_t v) : reducer(std::move(r)), var(v) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto r = reducer.lock()) {
      r->on_ready(var);
    }
    return outputs;
  }
};

using Handle = std::shared_ptr<Reducer>;

Reducer& of(void* handle) { return **static_cast<Handle*>(handle); }
}  // namespace

// A reducer over `n` parameters `vars` (their flat-buffer `offsets`) of the process group
// `group`, their gradients all-reduced in `n_buckets` buckets: `bucket_of[i]` is var i's bucket,
// numbered in the order they start.
extern "C" int msnr_reducer_new(void* group, at::Tensor** vars, const int64_t* offsets, const size_t* bucket_of,
                                size_t n, size_t n_buckets, void** out, char* err, size_t err_len) {
  try {
    auto r = std::make_shared<Reducer>();
    r->group = *static_cast<GroupPtr*>(group);
    r->buckets.resize(n_buckets);
    for (size_t i = 0; i < n; ++i) {
      TORCH_CHECK(bucket_of[i] < n_buckets, "bucket out of range");
      r->vars.push_back(*vars[i]);
      r->offsets.push_back(offsets[i]);
      r->bucket_of.push_back(bucket_of[i]);
      r->buckets[bucket_of[i]].push_back(i);
    }
    for (size_t i = 0; i < n; ++i) {
      auto acc = torch::autograd::impl::grad_accumulator(r->vars[i]);
      TORCH_CHECK(acc, "a parameter without a gradient accumulator (not a leaf that requires grad)");
      acc->add_post_hook(std::make_unique<ReadyHook>(std::weak_ptr<Reducer>(r), i));
      r->accumulators.push_back(std::move(acc));
    }
    *out = new Handle(std::move(r));
    return 1;
  } catch (const std::exception& e) {
    return msnr_shim::fail(e, err, err_len);
  }
}

// Arms the hooks for one backward pass whose gradients go into `flat` (zeros, laid out as the
// offsets say).
extern "C" int msnr_reducer_prepare(void* reducer, at::Tensor* flat, char* err, size_t err_len) {
  try {
    auto* r = &of(reducer);
    std::lock_guard<std::mutex> lock(r->mutex);
    r->flat = *flat;
    r->ready.assign(r->vars.size(), false);
    r->order.clear();
    r->pending.assign(r->buckets.size(), 0);
    for (size_t b : r->bucket_of) {
      ++r->pending[b];
    }
    r->next = 0;
    r->works.clear();
    r->error.clear();
    r->armed = true;
    return 1;
  } catch (const std::exception& e) {
    return msnr_shim::fail(e, err, err_len);
  }
}

// After the backward pass: starts the buckets left (parameters that got no gradient keep
// zeros) and waits for every bucket's all-reduce; the flat buffer then holds the sums.
extern "C" int msnr_reducer_finish(void* reducer, char* err, size_t err_len) {
  try {
    auto* r = &of(reducer);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    std::string error;
    {
      std::lock_guard<std::mutex> lock(r->mutex);
      r->armed = false;
      std::fill(r->pending.begin(), r->pending.end(), 0);
      r->start_ready();
      works.swap(r->works);
      error.swap(r->error);
      r->flat = at::Tensor();
    }
    for (auto& w : works) {
      w->wait();
    }
    TORCH_CHECK(error.empty(), error);
    return 1;
  } catch (const std::exception& e) {
    return msnr_shim::fail(e, err, err_len);
  }
}

// The order in which the last backward pass made the `n` vars ready (those it gave no
// gradient last, in index order): where DDP-like buckets should go.
extern "C" int msnr_reducer_order(void* reducer, int64_t* out, size_t n, char* err, size_t err_len) {
  try {
    auto& r = of(reducer);
    std::lock_guard<std::mutex> lock(r.mutex);
    TORCH_CHECK(n == r.vars.size(), "order of ", r.vars.size(), " vars asked into ", n);
    size_t k = 0;
    for (size_t v : r.order) {
      out[k++] = static_cast<int64_t>(v);
    }
    for (size_t v = 0; v < n; ++v) {
      if (!r.ready[v]) {
        out[k++] = static_cast<int64_t>(v);
      }
    }
    return 1;
  } catch (const std::exception& e) {
    return msnr_shim::fail(e, err, err_len);
  }
}

// Frees the reducer and with it the accumulators it kept (hooks that outlive it do nothing).
extern "C" void msnr_reducer_free(void* reducer) { delete static_cast<Handle*>(reducer); }
