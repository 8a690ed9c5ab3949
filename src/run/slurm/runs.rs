//! Each SLURM run's folder, `.msnr/slurm/run.*/`: its batch scripts, SLURM's output
//! files, the ids of the jobs it submitted (`jobs`) and a lock (`lock`) it holds while
//! it lives. A run whose msnr was killed leaves its folder with the lock free; the next
//! run cancels the jobs listed there (held jobs would otherwise wait in the queue forever)
//! and removes it. The lock is a `flock`, so this holds across login nodes sharing the store.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::cache::StoreLock;

use super::job;

/// This run's folder, held while the run lives; removed when it ends.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    _lock: StoreLock,
}

impl RunDir {
    /// Creates a fresh run folder under `parent` and takes its lock; first cancels the jobs of
    /// the runs that were killed and removes their folders. Returns the folder and how many
    /// such jobs it cancelled.
    ///
    /// # Errors
    /// When the folder or its lock cannot be created.
    pub fn create(parent: &Path) -> Result<(Self, usize), String> {
        let cancelled = clean_dead(parent);
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", parent.display());
        std::fs::create_dir_all(parent).map_err(|e| err(&e))?;
        let dir = tempfile::Builder::new().prefix("run.").tempdir_in(parent).map_err(|e| err(&e))?.keep();
        let lock = StoreLock::try_acquire(&dir.join("lock")).map_err(|e| err(&e))?;
        // Written after the lock is held: a folder without it is being set up, not dead.
        std::fs::write(dir.join("jobs"), "").map_err(|e| err(&e))?;
        Ok((Self { dir, _lock: lock }, cancelled))
    }

    /// The folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Adds a submitted job to the folder's list.
    pub fn record(&self, id: &str) {
        let file = std::fs::OpenOptions::new().append(true).open(self.dir.join("jobs"));
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{id}");
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Cancels the listed jobs of every run folder under `parent` whose lock is free (its run
/// was killed) and removes the folder; returns how many ids it cancelled.
fn clean_dead(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let mut cancelled = 0;
    for dir in entries.filter_map(Result::ok).map(|e| e.path()) {
        let Ok(jobs) = std::fs::read_to_string(dir.join("jobs")) else { continue };
        let Ok(_lock) = StoreLock::try_acquire(&dir.join("lock")) else { continue };
        for id in jobs.lines().map(str::trim).filter(|l| !l.is_empty()) {
            job::cancel(id);
            cancelled += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    cancelled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_runs_folder_is_kept_and_a_dead_ones_is_removed() {
        let parent = tempfile::tempdir().unwrap();
        // A killed run: its folder stays, its lock free (no ids: nothing to cancel here).
        let dead = parent.path().join("run.dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("jobs"), "").unwrap();
        let (live, cancelled) = RunDir::create(parent.path()).unwrap();
        assert_eq!(cancelled, 0);
        assert!(!dead.exists(), "a dead run's folder is removed");
        let (other, _) = RunDir::create(parent.path()).unwrap();
        assert!(live.path().exists() && other.path().exists(), "a live run's folder stays");
        let path = other.path().to_path_buf();
        drop(other);
        assert!(!path.exists(), "a run removes its folder when it ends");
    }
}
