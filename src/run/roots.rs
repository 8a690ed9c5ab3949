//! GC roots: every lockfile a run in this project wrote is listed in
//! `.msnr/roots`; `gc` keeps the store entries those lockfiles refer to.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cache::Lockfile;

fn roots_file(root: &Path) -> PathBuf {
    root.join(".msnr").join("roots")
}

/// The registered lockfile paths (one per line).
#[must_use]
pub fn list(root: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_to_string(roots_file(root))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Adds a lockfile to the roots (idempotent; written atomically).
///
/// # Errors
/// When `.msnr/roots` cannot be written.
pub fn register(root: &Path, lock_path: &Path) -> std::io::Result<()> {
    let abs = std::path::absolute(lock_path)?;
    let mut all = list(root);
    if !all.insert(abs) {
        return Ok(());
    }
    let text = all.iter().fold(String::new(), |mut text, p| {
        let _ = writeln!(text, "{}", p.display());
        text
    });
    let tmp = roots_file(root).with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, roots_file(root))
}

/// Every store key referred to by a registered lockfile that still exists.
///
/// # Errors
/// A registered lockfile that exists but cannot be parsed (gc then removes nothing).
pub fn live_keys(root: &Path) -> Result<HashSet<String>, String> {
    let mut keys = HashSet::new();
    for path in list(root) {
        if let Some(lock) = Lockfile::read(&path).map_err(|e| e.to_string())? {
            keys.extend(lock.stages.values().map(|e| e.key.clone()));
        }
    }
    Ok(keys)
}
