//! c10d, `torch.distributed`'s C++ core inside libtorch, for data-parallel training: a
//! `TCPStore` where the ranks meet, a Gloo (CPU) or NCCL (CUDA) process group over it and its
//! all-reduce, through `shim_c10d.cpp` and `shim_nccl.cpp`. The same objects
//! `torch.distributed.init_process_group("gloo" | "nccl")` builds; msnr adds no collective of
//! its own. NCCL is there where the build found its headers (`cfg(msnr_nccl)`, see build.rs).

use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;

use tch::{TchError, Tensor};

use super::checked;

extern "C" {
    fn msnr_store_new(
        host: *const c_char,
        port: c_int,
        is_server: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        port_out: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn msnr_store_free(store: *mut c_void);
    fn msnr_gloo_new(
        store: *mut c_void,
        host: *const c_char,
        iface: *const c_char,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn msnr_group_free(group: *mut c_void);
    fn msnr_group_allreduce_sum(group: *mut c_void, t: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
}

#[cfg(msnr_nccl)]
extern "C" {
    fn msnr_nccl_new(
        store: *mut c_void,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// A c10d `TCPStore`: the key-value store the ranks rendezvous through.
pub struct Store {
    ptr: *mut c_void,
    port: u16,
}

// SAFETY: c10d's TCPStore is used from one thread at a time here, and c10d itself allows
// moving it between threads (Python hands it across threads freely).
unsafe impl Send for Store {}

impl Store {
    /// The server side (`port` 0: any free port, see [`Store::port`]) or a client connecting to
    /// it, for `world` ranks on `host`; every wait gives up after `timeout`.
    ///
    /// # Errors
    /// What c10d reports: a port in use, no server within the timeout.
    pub fn new(host: &str, port: u16, server: bool, world: usize, timeout: Duration) -> Result<Self, TchError> {
        let host = c_string(host)?;
        let world = c_int::try_from(world).map_err(|_| TchError::Convert("world size".into()))?;
        let (mut ptr, mut bound) = (std::ptr::null_mut(), 0);
        // SAFETY: `host` outlives the call; the outputs are live locals.
        checked(|err, len| unsafe {
            msnr_store_new(
                host.as_ptr(),
                c_int::from(port),
                c_int::from(server),
                world,
                millis(timeout),
                &raw mut ptr,
                &raw mut bound,
                err,
                len,
            )
        })?;
        Ok(Self { ptr, port: u16::try_from(bound).unwrap_or(port) })
    }

    /// The port the store listens on (the one chosen when created with port 0).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from msnr_store_new and is freed once.
        unsafe { msnr_store_free(self.ptr) };
    }
}

/// A c10d process group (its `Backend`: `ProcessGroupGloo` or `ProcessGroupNCCL`): this
/// process's membership in a group of ranks.
pub struct ProcessGroup {
    ptr: *mut c_void,
}

// SAFETY: as for `Store`: one thread at a time, and c10d's process groups may change threads.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins a Gloo group as `rank` of `world` through `store`, its transport bound to the
    /// address `host` resolves to, or to the network interface `iface` where given; blocks
    /// until every rank has joined. Collectives fail after `timeout`.
    ///
    /// # Errors
    /// What c10d reports, e.g. a rank that never joined within the timeout.
    pub fn gloo(
        store: &Store,
        host: &str,
        iface: Option<&str>,
        rank: usize,
        world: usize,
        timeout: Duration,
    ) -> Result<Self, TchError> {
        let (host, iface) = (c_string(host)?, c_string(iface.unwrap_or_default())?);
        let (rank, world) = ranks(rank, world)?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `store`, `host` and `iface` outlive the call; c10d keeps its own reference to the store.
        checked(|err, len| unsafe {
            msnr_gloo_new(
                store.ptr,
                host.as_ptr(),
                iface.as_ptr(),
                rank,
                world,
                millis(timeout),
                &raw mut ptr,
                err,
                len,
            )
        })?;
        Ok(Self { ptr })
    }

    /// Joins an NCCL group as `rank` of `world` through `store`; its collectives run on the
    /// GPU of the tensors given, and fail after `timeout`.
    ///
    /// # Errors
    /// What c10d reports (no GPU, a rank that never joined), or a build without NCCL.
    pub fn nccl(store: &Store, rank: usize, world: usize, timeout: Duration) -> Result<Self, TchError> {
        let (rank, world) = ranks(rank, world)?;
        #[cfg(msnr_nccl)]
        {
            let mut ptr = std::ptr::null_mut();
            // SAFETY: `store` outlives the call; c10d keeps its own reference to it.
            checked(|err, len| unsafe {
                msnr_nccl_new(store.ptr, rank, world, millis(timeout), &raw mut ptr, err, len)
            })?;
            Ok(Self { ptr })
        }
        #[cfg(not(msnr_nccl))]
        {
            let _ = (store, rank, world, timeout);
            Err(TchError::Torch(
                "this msnr-worker was built without c10d's NCCL process group (the CUDA headers were \
                 missing: run ./msnrw, which installs nvidia-cuda-crt and nvidia-cuda-cccl, and rebuild)"
                    .into(),
            ))
        }
    }

    /// Sums `t` over the ranks in place (every rank ends with the same sum) and waits for it.
    ///
    /// # Errors
    /// What c10d reports: a rank gone (connection closed) or the timeout passed.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<(), TchError> {
        // SAFETY: `t` outlives the call; the collective writes only into its storage.
        checked(|err, len| unsafe { msnr_group_allreduce_sum(self.ptr, t.as_ptr().cast_mut().cast(), err, len) })
    }
}

impl ProcessGroup {
    /// The `c10::intrusive_ptr<c10d::Backend>*` the shim's functions take.
    pub(crate) fn as_ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from msnr_gloo_new or msnr_nccl_new and is freed once.
        unsafe { msnr_group_free(self.ptr) };
    }
}

fn ranks(rank: usize, world: usize) -> Result<(c_int, c_int), TchError> {
    let int = |v: usize| c_int::try_from(v).map_err(|_| TchError::Convert("rank or world size".into()));
    Ok((int(rank)?, int(world)?))
}

fn c_string(s: &str) -> Result<CString, TchError> {
    CString::new(s).map_err(|_| TchError::Convert(format!("{s:?} contains NUL")))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ranks in two threads of this process (c10d does not mind), on a free port.
    #[test]
    fn two_ranks_all_reduce_to_the_sum() {
        let timeout = Duration::from_secs(30);
        let server = Store::new("127.0.0.1", 0, true, 2, timeout).unwrap();
        let port = server.port();
        assert_ne!(port, 0, "the bound port is reported");
        let peer = std::thread::spawn(move || {
            let store = Store::new("127.0.0.1", port, false, 2, timeout).unwrap();
            let group = ProcessGroup::gloo(&store, "127.0.0.1", None, 1, 2, timeout).unwrap();
            let t = Tensor::from_slice(&[10.0f32, 20.0]);
            group.all_reduce_sum(&t).unwrap();
            Vec::<f32>::try_from(&t).unwrap()
        });
        let group = ProcessGroup::gloo(&server, "127.0.0.1", None, 0, 2, timeout).unwrap();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        group.all_reduce_sum(&t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [11.0, 22.0]);
        assert_eq!(peer.join().unwrap(), [11.0, 22.0], "both ranks hold the sum");
    }

    #[test]
    fn a_rank_that_never_joins_is_an_error_after_the_timeout() {
        let server = Store::new("127.0.0.1", 0, true, 2, Duration::from_millis(500)).unwrap();
        let err =
            ProcessGroup::gloo(&server, "127.0.0.1", None, 0, 2, Duration::from_millis(500)).err().expect("no peer");
        assert!(!err.to_string().is_empty());
    }

    /// On a machine without a GPU, NCCL's process group is reached and refuses (c10d's own
    /// message): the NCCL path is built and linked. With a GPU, a group of one sums in place.
    #[test]
    fn nccl_is_built_and_c10d_answers() {
        let timeout = Duration::from_secs(30);
        let store = Store::new("127.0.0.1", 0, true, 1, timeout).unwrap();
        let group = ProcessGroup::nccl(&store, 0, 1, timeout);
        if tch::Cuda::is_available() {
            let t = Tensor::from_slice(&[1.0f32, 2.0]).to_device(tch::Device::Cuda(0));
            group.unwrap().all_reduce_sum(&t).unwrap();
            assert_eq!(Vec::<f32>::try_from(&t.to_device(tch::Device::Cpu)).unwrap(), [1.0, 2.0]);
        } else {
            let err = group.err().expect("no GPU here").to_string();
            if cfg!(msnr_nccl) {
                assert!(err.contains("GPU"), "c10d's own refusal: {err}");
            } else {
                assert!(err.contains("built without"), "{err}");
            }
        }
    }
}
