//! Records the libtorch version the worker is built against (`msnr-torch`
//! links the torch package that `$MSNR_PYTHON` imports), so the front end can
//! put it in torch stages' cache keys without loading libtorch; and builds
//! the libjpeg(-turbo) shim `src/data/jpeg.c` (cfg `msnr_libjpeg` when it
//! compiles, else a warning and JPEGs go through the `image` crate).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=MSNR_PYTHON");
    println!(
        "cargo:rustc-env=MSNR_LIBTORCH_VERSION={}",
        torch_root().map_or_else(|| "unknown".into(), |r| torch_version(&r))
    );
    build_jpeg_shim();
}

/// Compiles `src/data/jpeg.c` against the system libjpeg and links it; on
/// failure (no `jpeglib.h`) warns and leaves `msnr_libjpeg` unset, as does
/// `MSNR_NO_LIBJPEG=1` (to build and test the `image`-crate path).
fn build_jpeg_shim() {
    println!("cargo::rustc-check-cfg=cfg(msnr_libjpeg)");
    println!("cargo:rerun-if-changed=src/data/jpeg.c");
    println!("cargo:rerun-if-env-changed=MSNR_NO_LIBJPEG");
    if std::env::var_os("MSNR_NO_LIBJPEG").is_some_and(|v| v != "0" && !v.is_empty()) {
        println!("cargo:warning=MSNR_NO_LIBJPEG is set: JPEG decodes with the image crate");
        return;
    }
    let built = cc::Build::new().file("src/data/jpeg.c").warnings(true).try_compile("msnr_jpeg");
    match built {
        Ok(()) => {
            println!("cargo:rustc-link-lib=jpeg");
            println!("cargo:rustc-cfg=msnr_libjpeg");
        }
        Err(e) => println!("cargo:warning=libjpeg shim not built ({e}); JPEG decodes with the image crate"),
    }
}

/// `$LIBTORCH`, else the folder of the torch package `$MSNR_PYTHON` (or `python3`) imports.
fn torch_root() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir));
    }
    let python = std::env::var("MSNR_PYTHON").unwrap_or_else(|_| "python3".into());
    let out =
        Command::new(python).args(["-c", "import os, torch; print(os.path.dirname(torch.__file__))"]).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `build-version` (libtorch archives) or `version.py`'s `__version__` (PyPI wheels).
fn torch_version(root: &std::path::Path) -> String {
    if let Ok(v) = std::fs::read_to_string(root.join("build-version")) {
        return v.trim().to_string();
    }
    let text = std::fs::read_to_string(root.join("version.py")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map_or_else(|| "unknown".into(), |v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
}
