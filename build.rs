//! Records the libtorch version the worker is built against (`msnr-torch`
//! links the torch package that `$MSNR_PYTHON` imports), so the front end can
//! put it in torch stages' cache keys without loading libtorch.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=MSNR_PYTHON");
    println!(
        "cargo:rustc-env=MSNR_LIBTORCH_VERSION={}",
        torch_root().map_or_else(|| "unknown".into(), |r| torch_version(&r))
    );
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
