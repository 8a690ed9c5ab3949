//! Gradient buckets all-reduced while the backward pass runs, as PyTorch DDP's `Reducer`
//! does (`shim_reducer.cpp`): each parameter's `AccumulateGrad` node gets a post hook that
//! copies its gradient into the flat buffer; a bucket whose parameters are all in starts its
//! all-reduce (c10d's `allreduce_coalesced` over their slices) on the process group's threads
//! or stream while autograd goes on; buckets start in their numbered order on every rank, so
//! the collectives pair up. [`Reducer::finish`] starts the rest and waits.

use std::ffi::{c_char, c_int, c_void};

use tch::{TchError, Tensor};

use super::c10d::ProcessGroup;
use super::checked;

extern "C" {
    fn msnr_reducer_new(
        group: *mut c_void,
        vars: *const *mut c_void,
        offsets: *const i64,
        bucket_of: *const usize,
        n: usize,
        n_buckets: usize,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn msnr_reducer_prepare(reducer: *mut c_void, flat: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn msnr_reducer_finish(reducer: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn msnr_reducer_order(reducer: *mut c_void, out: *mut i64, n: usize, err: *mut c_char, err_len: usize) -> c_int;
    fn msnr_reducer_free(reducer: *mut c_void);
}

/// Hooks on a set of parameters that all-reduce their gradients in buckets over a group.
pub struct Reducer {
    ptr: *mut c_void,
    vars: usize,
}

// SAFETY: the reducer's state is behind its own mutex; hooks run on autograd's threads.
unsafe impl Send for Reducer {}
// SAFETY: as above: every entry point locks the reducer's mutex.
unsafe impl Sync for Reducer {}

impl Reducer {
    /// Hooks `vars` (leaf tensors requiring grad; `offsets[i]` is var i's place in the flat
    /// gradient buffer) into buckets `bucket_of[i]` (0-based, the order they start in) over
    /// `group`.
    ///
    /// # Errors
    /// Lengths that differ, a bucket number out of range, a var that is not a leaf requiring grad.
    pub fn new(group: &ProcessGroup, vars: &[&Tensor], offsets: &[i64], bucket_of: &[usize]) -> Result<Self, TchError> {
        if vars.len() != offsets.len() || vars.len() != bucket_of.len() {
            return Err(TchError::Shape("vars, offsets and buckets differ in length".into()));
        }
        let n_buckets = bucket_of.iter().max().map_or(0, |b| b + 1);
        let ptrs: Vec<*mut c_void> = vars.iter().map(|v| v.as_ptr().cast_mut().cast()).collect();
        let mut ptr = std::ptr::null_mut();
        // SAFETY: the slices outlive the call; the shim copies the tensors (shared handles) it keeps.
        checked(|err, len| unsafe {
            msnr_reducer_new(
                group.as_ptr(),
                ptrs.as_ptr(),
                offsets.as_ptr(),
                bucket_of.as_ptr(),
                vars.len(),
                n_buckets,
                &raw mut ptr,
                err,
                len,
            )
        })?;
        Ok(Self { ptr, vars: vars.len() })
    }

    /// Arms the hooks for the next backward pass, whose gradients go into `flat` (zeros).
    ///
    /// # Errors
    /// What the shim reports.
    pub fn prepare(&self, flat: &Tensor) -> Result<(), TchError> {
        // SAFETY: `flat` outlives the call; the shim keeps a handle to it until `finish`.
        checked(|err, len| unsafe { msnr_reducer_prepare(self.ptr, flat.as_ptr().cast_mut().cast(), err, len) })
    }

    /// After the backward pass: starts the buckets left and waits for all; the flat buffer then
    /// holds the gradients summed over the ranks.
    ///
    /// # Errors
    /// A failed collective (a rank gone, the timeout), or a parameter that got its gradient twice.
    pub fn finish(&self) -> Result<(), TchError> {
        // SAFETY: plain call on a live reducer.
        checked(|err, len| unsafe { msnr_reducer_finish(self.ptr, err, len) })
    }

    /// The vars in the order the last backward pass made them ready (those it gave no gradient
    /// last, by index).
    ///
    /// # Errors
    /// What the shim reports.
    pub fn order(&self) -> Result<Vec<i64>, TchError> {
        let mut out = vec![0i64; self.vars];
        // SAFETY: `out` has room for every var, as the shim checks.
        checked(|err, len| unsafe { msnr_reducer_order(self.ptr, out.as_mut_ptr(), out.len(), err, len) })?;
        Ok(out)
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from msnr_reducer_new and is freed once.
        unsafe { msnr_reducer_free(self.ptr) };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tch::nn::{Init, VarStore};
    use tch::{Device, Kind};

    use super::*;
    use crate::shim::c10d::Store;

    /// Two parameters in two buckets over a group of one (Gloo on the CPU; and NCCL on the GPU
    /// where there is one): their gradients land in the flat buffer (and leave the
    /// parameters), in the order autograd made them, pass after pass.
    #[test]
    fn hooks_move_gradients_into_the_flat_buffer_and_record_their_order() {
        let timeout = Duration::from_secs(30);
        let store = Store::new("127.0.0.1", 0, true, 1, timeout).unwrap();
        let gloo = ProcessGroup::gloo(&store, "127.0.0.1", None, 0, 1, timeout).unwrap();
        buckets_of_two(&gloo, Device::Cpu);
        if tch::Cuda::is_available() {
            let store = Store::new("127.0.0.1", 0, true, 1, timeout).unwrap();
            buckets_of_two(&ProcessGroup::nccl(&store, 0, 1, timeout).unwrap(), Device::Cuda(0));
        }
    }

    fn buckets_of_two(group: &ProcessGroup, device: Device) {
        let vs = VarStore::new(device);
        let a = vs.root().var("a", &[2], Init::Const(1.0));
        let b = vs.root().var("b", &[3], Init::Const(2.0));
        let reducer = Reducer::new(group, &[&a, &b], &[0, 2], &[1, 0]).unwrap();
        for pass in 0..2 {
            let flat = Tensor::zeros([5], (Kind::Float, device));
            reducer.prepare(&flat).unwrap();
            // d/da sum(3a) = 3, d/db sum(b^2) = 2b = 4; b's branch comes first.
            let loss = (&b * &b).sum(Kind::Float) * 1.0 + (&a * 3.0).sum(Kind::Float);
            loss.backward();
            reducer.finish().unwrap();
            let sums = Vec::<f32>::try_from(&flat.to_device(Device::Cpu)).unwrap();
            assert_eq!(sums, [3.0, 3.0, 4.0, 4.0, 4.0], "{device:?}, pass {pass}");
            assert!(!a.grad().defined() && !b.grad().defined(), "moved, not copied");
            let mut order = reducer.order().unwrap();
            order.sort_unstable();
            assert_eq!(order, [0, 1]);
        }
        // Gradients of two backward passes in one: refused, naming the fix.
        let flat = Tensor::zeros([5], (Kind::Float, device));
        reducer.prepare(&flat).unwrap();
        (&a * 3.0).sum(Kind::Float).backward();
        (&a * 3.0).sum(Kind::Float).backward();
        let err = reducer.finish().unwrap_err().to_string();
        assert!(err.contains("twice") && err.contains("MSNR_DDP_BUCKET_MB=0"), "{err}");
    }
}
