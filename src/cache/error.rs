//! [`CacheError`]: everything that can go wrong in the cache, each variant
//! naming the file or folder involved.

use std::io;
use std::path::{Path, PathBuf};

/// The end of every [`CacheError::Corrupted`] message (the runner looks for it in a stage's
/// error to set the damaged input aside).
pub const CORRUPTED: &str = "the store entry is corrupted; `msnr run` rebuilds it";

/// A failure of the cache: hashing, the store, the lock, the lockfile.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading a file or listing a folder failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Creating, writing, renaming or removing a file or folder failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file that must be JSON of a known shape is not.
    #[error("{} is malformed: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where and what the parser choked on (line and column included).
        source: serde_json::Error,
    },
    /// A file was written by a newer msnr, in a format this one does not know.
    #[error("{} has format version {found}, but this msnr reads version {supported}; upgrade msnr", path.display())]
    FormatVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// `try_lock` found the store lock held by another process.
    #[error("another msnr process holds {}; wait for it to finish or stop it", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// Taking or releasing the store lock failed for a reason other than contention.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Something that is neither a file, a folder nor a symlink (a socket, a device).
    #[error("{} is not a regular file, folder or symlink, so it cannot be hashed", path.display())]
    Unhashable {
        /// The offending path.
        path: PathBuf,
    },
    /// A parameter refers to a stage whose output is not known (not run, not cached).
    #[error("parameter `{param}` refers to stage `{stage}`, whose output is not available yet")]
    MissingInput {
        /// The parameter path (`data`, `net.cond`).
        param: String,
        /// The upstream stage name.
        stage: String,
    },
    /// A stored file differs from what its entry recorded when it was stored.
    #[error("{}: {problem} (store entry {}): {CORRUPTED}", file.display(), &key[..key.len().min(12)])]
    Corrupted {
        /// The entry's key.
        key: String,
        /// The file read.
        file: PathBuf,
        /// What differs (`hash mismatch`, `missing`, a size).
        problem: String,
    },
    /// A cache key that is not 64 lowercase hex digits (it would not be a safe folder name).
    #[error("`{key}` is not a cache key (expected 64 lowercase hex digits)")]
    BadKey {
        /// The rejected key.
        key: String,
    },
}

impl CacheError {
    /// A read failure at `path`.
    pub fn read(path: impl AsRef<Path>, source: io::Error) -> Self {
        Self::Read { path: path.as_ref().to_path_buf(), source }
    }

    /// A write failure at `path`.
    pub fn write(path: impl AsRef<Path>, source: io::Error) -> Self {
        Self::Write { path: path.as_ref().to_path_buf(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path() {
        let e = CacheError::read("/x/y.json", io::Error::new(io::ErrorKind::NotFound, "gone"));
        assert_eq!(e.to_string(), "cannot read /x/y.json: gone");
        let e = CacheError::Locked { path: "/p/.msnr/lock".into() };
        assert!(e.to_string().contains("/p/.msnr/lock"), "{e}");
    }
}
