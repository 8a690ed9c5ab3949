//! [`StoreLock`]: an exclusive advisory lock (flock via fs4) on `.msnr/lock`
//! that keeps two msnr processes from writing the store at once. The lock
//! goes with the guard: dropping it, or the process dying, releases it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::error::CacheError;

/// Holds the store lock until dropped.
#[derive(Debug)]
pub struct StoreLock {
    /// The open lock file; the lock belongs to this handle.
    file: File,
    /// The lock file's path, for messages.
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock at `path`, waiting for it if another process holds it
    /// (saying so once on stderr).
    ///
    /// # Errors
    /// [`CacheError::Lock`] when the lock file cannot be opened or locked.
    pub fn acquire(path: &Path) -> Result<Self, CacheError> {
        match Self::try_acquire(path) {
            Err(CacheError::Locked { .. }) => {
                crate::console::err_line(&format!("waiting for another msnr process holding {}", path.display()));
                let file = open(path)?;
                file.lock_exclusive().map_err(|source| CacheError::Lock { path: path.into(), source })?;
                Ok(Self { file, path: path.into() })
            }
            other => other,
        }
    }

    /// Takes the lock at `path` if it is free.
    ///
    /// # Errors
    /// [`CacheError::Locked`] when another process (or another handle in this
    /// one) holds it; [`CacheError::Lock`] when it cannot be opened or locked.
    pub fn try_acquire(path: &Path) -> Result<Self, CacheError> {
        let file = open(path)?;
        match file.try_lock_exclusive() {
            Ok(true) => Ok(Self { file, path: path.into() }),
            Ok(false) => Err(CacheError::Locked { path: path.into() }),
            Err(source) => Err(CacheError::Lock { path: path.into(), source }),
        }
    }

    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first is just explicit.
        let _ = FileExt::unlock(&self.file);
    }
}

/// Opens (creating) the lock file.
fn open(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| CacheError::Lock { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_handle_cannot_take_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = StoreLock::try_acquire(&path).unwrap();
        let err = StoreLock::try_acquire(&path).unwrap_err();
        assert!(matches!(err, CacheError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        drop(held);
        StoreLock::try_acquire(&path).unwrap();
    }

    #[test]
    fn acquire_waits_for_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = StoreLock::try_acquire(&path).unwrap();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || StoreLock::acquire(&path).map(|_| std::time::Instant::now()))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let released = std::time::Instant::now();
        drop(held);
        let acquired = waiter.join().unwrap().unwrap();
        assert!(acquired >= released);
    }
}
