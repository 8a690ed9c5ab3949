//! Which device a torch stage will use, decided without loading libtorch, and
//! the libtorch version: both are part of a torch stage's cache key.

use std::path::Path;

/// The libtorch version the worker was built against (from the build script).
pub const LIBTORCH_VERSION: &str = match option_env!("MSNR_LIBTORCH_VERSION") {
    Some(v) => v,
    None => "unknown",
};

/// True when an NVIDIA GPU is visible to this machine (the driver exposes
/// `/proc/driver/nvidia/gpus/*` or `/dev/nvidia0`), or `MSNR_DEVICE=cuda` is set.
#[must_use]
pub fn cuda_present() -> bool {
    match std::env::var("MSNR_DEVICE").as_deref() {
        Ok("cpu") => return false,
        Ok("cuda") => return true,
        _ => {}
    }
    let gpus = Path::new("/proc/driver/nvidia/gpus");
    gpus.read_dir().is_ok_and(|mut d| d.next().is_some()) || Path::new("/dev/nvidia0").exists()
}

/// Resolves a stage's `device` parameter (`auto`, `cpu` or `cuda`) to `cpu` or `cuda`.
///
/// # Errors
/// `cuda` asked for on a machine without a GPU.
pub fn resolve(requested: &str) -> Result<&'static str, String> {
    match requested {
        "cpu" => Ok("cpu"),
        "cuda" if cuda_present() => Ok("cuda"),
        "cuda" => Err("device = cuda, but no NVIDIA GPU is visible on this machine (use auto or cpu)".into()),
        _ => Ok(if cuda_present() { "cuda" } else { "cpu" }),
    }
}

/// The GPUs stages may be placed on, as the values to put in a worker's
/// `CUDA_VISIBLE_DEVICES`: the entries of this process's own `CUDA_VISIBLE_DEVICES` when
/// set, else one index per GPU the driver lists; none without CUDA.
#[must_use]
pub fn gpus() -> Vec<String> {
    if !cuda_present() {
        return Vec::new();
    }
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    }
    let listed = Path::new("/proc/driver/nvidia/gpus").read_dir().map_or(0, Iterator::count);
    (0..listed).map(|i| i.to_string()).collect()
}
