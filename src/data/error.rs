//! Why reading or writing a dataset failed; every variant names its file.

use std::path::PathBuf;

use crate::stages::StageError;

/// A dataset, image or folder error.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error while reading or writing `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but its content is wrong (a manifest, a shard, an image).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A caller handed the writer something that does not fit the dataset.
    #[error("dataset writer: {0}")]
    Usage(String),
}

impl DataError {
    /// An I/O error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Invalid content in the file at `path`.
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Invalid { path: path.into(), message: message.into() }
    }
}

impl From<DataError> for StageError {
    fn from(err: DataError) -> Self {
        match err {
            DataError::Io { path, source } => StageError::Io { path, source },
            DataError::Invalid { path, message } => StageError::Input { path, message },
            DataError::Usage(message) => StageError::Failed(message),
        }
    }
}
