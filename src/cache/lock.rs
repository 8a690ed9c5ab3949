//! [`StoreLock`]: an exclusive advisory lock (flock via fs4) on a lock file. The store uses
//! two kinds (see [`super::Store`]): the store-wide `.msnr/lock`, held briefly for
//! bookkeeping (cleaning `tmp/`, gc, the roots and lockfile writes), and one
//! `.msnr/locks/<key>` per entry, held while that entry is built, so unrelated pipelines of
//! one project build at once while two processes never build the same key. The lock goes
//! with the guard: dropping it, or the process dying, releases it.
//!
//! Runs also hold `.msnr/runs.lock` shared for their whole length, and `gc` takes it
//! exclusively: gc waits for running runs, which may have built entries no lockfile
//! refers to yet (the lockfile is written when a run ends).
//!
//! A lock file may be deleted (gc removes those of deleted entries, holding them). A waiter
//! that locked a file someone deleted meanwhile holds nothing; so after locking, the handle
//! is checked to still be the file at the path (same device and inode), else it retries.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::error::CacheError;

/// Holds a lock until dropped.
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
        Self::acquire_saying(path, &format!("waiting for another msnr process holding {}", path.display()))
    }

    /// Takes the lock at `path`, waiting for it if another process holds it, and then
    /// printing `waiting` once on stderr first.
    ///
    /// # Errors
    /// [`CacheError::Lock`] when the lock file cannot be opened or locked.
    pub fn acquire_saying(path: &Path, waiting: &str) -> Result<Self, CacheError> {
        match Self::try_acquire(path) {
            Err(CacheError::Locked { .. }) => {
                crate::console::err_line(waiting);
                loop {
                    let file = open(path)?;
                    file.lock_exclusive().map_err(|source| CacheError::Lock { path: path.into(), source })?;
                    if still_at(&file, path) {
                        return Ok(Self { file, path: path.into() });
                    }
                }
            }
            other => other,
        }
    }

    /// Takes a shared lock at `path` (many holders at once, none while an exclusive holder
    /// has it), waiting for an exclusive holder and then printing `waiting` once on stderr first.
    ///
    /// # Errors
    /// [`CacheError::Lock`] when the lock file cannot be opened or locked.
    pub fn acquire_shared(path: &Path, waiting: &str) -> Result<Self, CacheError> {
        let file = open(path)?;
        match FileExt::try_lock_shared(&file) {
            Ok(true) => return Ok(Self { file, path: path.into() }),
            Ok(false) => crate::console::err_line(waiting),
            Err(source) => return Err(CacheError::Lock { path: path.into(), source }),
        }
        FileExt::lock_shared(&file).map_err(|source| CacheError::Lock { path: path.into(), source })?;
        Ok(Self { file, path: path.into() })
    }

    /// Takes the lock at `path` if it is free.
    ///
    /// # Errors
    /// [`CacheError::Locked`] when another process (or another handle in this
    /// one) holds it; [`CacheError::Lock`] when it cannot be opened or locked.
    pub fn try_acquire(path: &Path) -> Result<Self, CacheError> {
        loop {
            let file = open(path)?;
            match file.try_lock_exclusive() {
                Ok(true) if still_at(&file, path) => return Ok(Self { file, path: path.into() }),
                Ok(true) => {}
                Ok(false) => return Err(CacheError::Locked { path: path.into() }),
                Err(source) => return Err(CacheError::Lock { path: path.into(), source }),
            }
        }
    }

    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the lock file, then releases the lock (a waiter that locked the deleted file
    /// sees it is gone and opens a fresh one).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
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

/// Whether the open `file` is still the file at `path` (not deleted or replaced meanwhile).
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
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

    #[test]
    fn shared_holders_exclude_an_exclusive_one_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.lock");
        let a = StoreLock::acquire_shared(&path, "").unwrap();
        let b = StoreLock::acquire_shared(&path, "").unwrap();
        assert!(matches!(StoreLock::try_acquire(&path), Err(CacheError::Locked { .. })));
        drop((a, b));
        let exclusive = StoreLock::try_acquire(&path).unwrap();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || StoreLock::acquire_shared(&path, "waiting").map(|_| std::time::Instant::now()))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let released = std::time::Instant::now();
        drop(exclusive);
        assert!(waiter.join().unwrap().unwrap() >= released);
    }

    #[test]
    fn a_waiter_on_a_removed_lock_file_takes_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = StoreLock::try_acquire(&path).unwrap();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || StoreLock::acquire(&path).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        held.remove();
        let got = waiter.join().unwrap();
        assert!(path.exists(), "the waiter recreated the lock file");
        let err = StoreLock::try_acquire(&path).unwrap_err();
        assert!(matches!(err, CacheError::Locked { .. }), "the waiter holds the file now at the path: {err}");
        drop(got);
    }
}
