//! GC roots: every lockfile a run in this project wrote is listed in
//! `.msnr/roots`; `gc` keeps the store entries those lockfiles refer to, and
//! those of every `*.msnr.lock` under the project root, registered or not.

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

/// Folders the lockfile search never enters: the store, build output, git's own.
const SKIPPED: [&str; 3] = [".msnr", "target", ".git"];

/// Every `*.msnr.lock` under `root` (not following symlinks, skipping [`SKIPPED`]), sorted.
#[must_use]
pub fn find_lockfiles(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && !SKIPPED.iter().any(|s| name == *s) {
                todo.push(entry.path());
            } else if kind.is_file() && name.to_string_lossy().ends_with(".msnr.lock") {
                found.insert(entry.path());
            }
        }
    }
    found
}

/// What `gc` keeps: the store keys referred to by every lockfile registered by a run or
/// lying under the project root (one from `git checkout`, a renamed pipeline), and the
/// lockfiles read.
///
/// # Errors
/// A lockfile that exists but cannot be parsed, named (gc then removes nothing).
pub fn live_keys(root: &Path) -> Result<(HashSet<String>, Vec<PathBuf>), String> {
    let mut paths = list(root);
    paths.extend(find_lockfiles(root).into_iter().filter_map(|p| std::path::absolute(p).ok()));
    let mut keys = HashSet::new();
    let mut read = Vec::new();
    for path in paths {
        if let Some(lock) = Lockfile::read(&path).map_err(|e| e.to_string())? {
            keys.extend(lock.stages.values().map(|e| e.key.clone()));
            read.push(path);
        }
    }
    Ok((keys, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lockfiles_below_the_root_but_not_in_the_store_build_or_git_folders() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["a.msnr.lock", "deep/er/b.msnr.lock", ".msnr/c.msnr.lock", "target/d.msnr.lock", ".git/e.msnr.lock"]
        {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}").unwrap();
        }
        std::fs::write(dir.path().join("a.msnr"), "").unwrap();
        let found: Vec<PathBuf> = find_lockfiles(dir.path()).into_iter().collect();
        assert_eq!(found, vec![dir.path().join("a.msnr.lock"), dir.path().join("deep/er/b.msnr.lock")]);
    }
}
