//! CPU time of this process, shared by the benches of both crates (`benches/data_support`,
//! and `crates/torch/benches/rounds` through a `#[path]`).

/// This process's CPU seconds so far (`getrusage(RUSAGE_SELF)`: every thread, user + system).
#[allow(clippy::cast_precision_loss)]
pub fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is handed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
