//! Crash-safe file writes: write a temporary file beside the target, fsync
//! it, rename it over the target, fsync the folder. A reader sees the old
//! file or the new one, never a torn one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::error::CacheError;

/// Replaces `path` with `bytes` atomically (creating the parent folder if needed).
///
/// # Errors
/// [`CacheError::Write`] naming `path` (or its folder) when any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| CacheError::write(dir, e))?;
    let mut tmp =
        tempfile::Builder::new().prefix(".msnr-tmp").tempfile_in(dir).map_err(|e| CacheError::write(dir, e))?;
    tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all()).map_err(|e| CacheError::write(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| CacheError::write(path, e.error))?;
    sync_dir(dir)
}

/// Flushes a folder's entries (new names, renames) to disk. A no-op where folders cannot be opened.
///
/// # Errors
/// [`CacheError::Write`] when the fsync fails.
pub fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|f| f.sync_all()).map_err(|e| CacheError::write(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Flushes one file's content to disk.
///
/// # Errors
/// [`CacheError::Write`] when it cannot be opened or synced.
pub fn sync_file(path: &Path) -> Result<(), CacheError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| CacheError::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn failures_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let err = write_atomic(&dir.path().join("file/x"), b"").unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }
}
