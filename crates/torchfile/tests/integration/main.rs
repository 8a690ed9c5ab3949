//! Integration tests of msnr-torchfile against files written by PyTorch's own `torch.save`
//! (`tests/fixtures/make_fixtures.py`).

mod fixtures;
mod mutations;

use std::path::PathBuf;

/// A fixture file's path.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Every `torch.save` fixture (`zip_*.pt`, `legacy_*.pt`), sorted.
pub(crate) fn torch_fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixture(""))
        .expect("fixture folder")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pt"))
        .filter(|p| {
            p.file_name().is_some_and(|n| ["zip_", "legacy_"].iter().any(|f| n.to_string_lossy().starts_with(f)))
        })
        .collect();
    out.sort();
    out
}
