//! Finds libtorch for the worker binary: sets an rpath to its `lib` folder so
//! nothing needs `LD_LIBRARY_PATH`, and links `libtorch_cuda` past rustc's
//! `--as-needed` (see shared GPU notes) so CUDA is used where present. The front
//! end binary `msnr` gets none of this and never loads libtorch.

use std::path::PathBuf;
use std::process::Command;

const WORKER: &str = "msnr-worker";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=MSNR_PYTHON");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo::rustc-check-cfg=cfg(msnr_nccl)");
    let Some(lib) = libtorch_lib_dir() else {
        println!("cargo:warning=libtorch not found: run ./msnrw once to install it");
        return;
    };
    println!("cargo:rustc-env=MSNR_LIBTORCH_LIB={}", lib.display());
    compile_shim(&lib);
    compile_nccl(&lib);
    // Every binary (the worker, tests, benches) finds libtorch without LD_LIBRARY_PATH;
    // an rpath loads nothing by itself, so the front end still never loads libtorch.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The worker, the tests and the benches (vit_step) use CUDA where present: without these
    // args `--as-needed` drops libtorch_cuda and they silently run on the CPU.
    if lib.join("libtorch_cuda.so").exists() {
        for target in [format!("-bin={WORKER}"), "-tests".into(), "-benches".into()] {
            for arg in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
                println!("cargo:rustc-link-arg{target}={arg}");
            }
        }
    }
}

/// `$LIBTORCH/lib`, else the `lib` folder of the torch package that
/// `$MSNR_PYTHON` (or `python3`) imports, as tch's `LIBTORCH_USE_PYTORCH` does.
fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("MSNR_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Compiles `src/shim.cpp` (the libtorch calls tch does not bind: autocast dtype, pinned
/// memory, fused `AdamW`), `src/shim_c10d.cpp` (c10d's store and Gloo process group, with
/// the gloo headers the wheel lacks from `vendor/gloo`) and `src/shim_reducer.cpp` (gradient
/// buckets all-reduced during the backward pass) against the headers beside `lib`.
fn compile_shim(lib: &std::path::Path) {
    let sources = ["src/shim.cpp", "src/shim_c10d.cpp", "src/shim_reducer.cpp"];
    for src in sources {
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/shim_error.h");
    println!("cargo:rerun-if-changed=vendor/gloo");
    let include = lib.parent().unwrap_or(lib).join("include");
    cc::Build::new()
        .cpp(true)
        .files(sources)
        .define("USE_C10D_GLOO", None)
        .include("vendor/gloo")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("msnr_shim");
}

/// Compiles `src/shim_nccl.cpp` (c10d's NCCL process group) where libtorch has CUDA and the
/// headers `ProcessGroupNCCL.hpp` pulls in are installed, and sets `cfg(msnr_nccl)`; elsewhere
/// data-parallel training on CUDA is refused with a message saying what to install.
fn compile_nccl(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/shim_nccl.cpp");
    let Some(dirs) = nccl_includes(lib) else {
        if lib.join("libtorch_cuda.so").exists() {
            println!(
                "cargo:warning=no CUDA/NCCL headers (nvidia-cuda-crt, nvidia-cuda-cccl): devices > 1 on CUDA \
                 will be refused; ./msnrw installs them"
            );
        }
        return;
    };
    let include = lib.parent().unwrap_or(lib).join("include");
    let mut build = cc::Build::new();
    build.cpp(true).file("src/shim_nccl.cpp").define("USE_C10D_NCCL", None).define("USE_CUDA", None);
    build.include(&include).include(include.join("torch/csrc/api/include"));
    for dir in dirs {
        build.include(dir);
    }
    build.flag("-std=c++17").flag("-D_GLIBCXX_USE_CXX11_ABI=1").warnings(false).compile("msnr_shim_nccl");
    println!("cargo:rustc-cfg=msnr_nccl");
}

/// The folders with the CUDA runtime headers (and the `crt/` and `nv/` ones they include) and
/// `nccl.h`: the `nvidia/` packages beside the torch wheel, else `$CUDA_HOME/include`; `None`
/// where libtorch has no CUDA or a header is missing.
fn nccl_includes(lib: &std::path::Path) -> Option<Vec<PathBuf>> {
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    let site = lib.parent()?.parent()?.join("nvidia");
    let toolkit = std::env::var_os("CUDA_HOME").map(|h| PathBuf::from(h).join("include"));
    let cuda = [Some(site.join("cu13/include")), toolkit.clone()]
        .into_iter()
        .flatten()
        .find(|d| ["cuda_runtime.h", "crt/host_config.h", "nv/target"].iter().all(|h| d.join(h).exists()))?;
    let nccl = [Some(site.join("nccl/include")), toolkit, Some(PathBuf::from("/usr/include"))]
        .into_iter()
        .flatten()
        .find(|d| d.join("nccl.h").exists())?;
    Some(vec![cuda, nccl])
}
