//! Process-wide tuning of glibc's allocator, called first thing by both binaries.
//!
//! By default glibc serves every allocation above 128 KiB with a fresh `mmap` and returns it
//! with `munmap` when freed. An image stage allocates a few such buffers per image (a decoded
//! 500x375 RGB photo is 550 KiB), and a CPU training step allocates its activations anew, so the
//! kernel zero-fills and maps those pages again for every image or step. Serving allocations
//! up to 64 MiB from the heap (and keeping up to 256 MiB of freed memory before returning it to
//! the system) reuses the same pages instead. Measured (benches/RESULTS.md): `msnr run` of an
//! ADM crop of 400 ImageNet-sized JPEGs 0.37 s -> 0.22 s (system time 0.27 s -> 0.02 s); the
//! CPU training step of the `train_cpu` bench 172 -> 147 ms.

/// Allocations up to this size come from the heap, not from `mmap`.
const MMAP_THRESHOLD: i32 = 64 << 20;
/// Freed heap memory kept for reuse before it is returned to the system.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Applies the settings above (glibc only; elsewhere nothing). `MSNR_MALLOC=default` keeps
/// glibc's defaults (and its `GLIBC_TUNABLES`).
pub fn tune() {
    if std::env::var_os("MSNR_MALLOC").is_some_and(|v| v == "default") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
