//! A loaded pipeline with everything the verbs need: its graph, the store it
//! caches into, and its lockfile.

use std::path::{Path, PathBuf};

use crate::cache::{Lockfile, Store};
use crate::graph::Dag;
use crate::lang::{self, Diagnostics, Pipeline};
use crate::stages::{check, Checked};

use super::device;
use super::keys::Keyer;

/// Why a pipeline could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The pipeline has errors (rendered against its files).
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The store or lockfile could not be used.
    #[error("{0}")]
    Other(String),
}

/// A checked pipeline, its graph and its lockfile.
pub struct Project {
    /// The checked pipeline.
    pub pipeline: Pipeline,
    /// Its validated graph.
    pub dag: Dag,
    /// Each stage's typed parameters and output shape, by index.
    pub checked: Vec<Checked>,
    /// `<file>.lock` beside the pipeline.
    pub lock_path: PathBuf,
    /// The lockfile's content (empty when there is none yet).
    pub lockfile: Lockfile,
    /// The project root: the store lives in `<root>/.msnr`.
    pub root: PathBuf,
}

impl Project {
    /// Loads, checks and graphs a pipeline, and reads its lockfile.
    ///
    /// # Errors
    /// Diagnostics for an invalid pipeline; a message for an unreadable lockfile.
    pub fn open(path: &Path, overrides: &[(String, String)]) -> Result<Self, OpenError> {
        let pipeline = lang::load(path, overrides).map_err(OpenError::Invalid)?;
        let dag = Dag::build(&pipeline).map_err(OpenError::Invalid)?;
        let checked = check::check(&pipeline, &dag, &|d| device::resolve(d).ok()).map_err(OpenError::Invalid)?;
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lockfile = Lockfile::read(&lock_path).map_err(|e| OpenError::Other(e.to_string()))?.unwrap_or_default();
        let root = project_root(path);
        Ok(Self { pipeline, dag, checked, lock_path, lockfile, root })
    }

    /// Opens the store (creating it on first use).
    ///
    /// # Errors
    /// When `.msnr` cannot be created or read.
    pub fn store(&self) -> Result<Store, OpenError> {
        Store::open(&self.root).map_err(|e| OpenError::Other(e.to_string()))
    }

    /// A keyer with the store's file-hash memo.
    ///
    /// # Errors
    /// When the memo exists but cannot be read.
    pub fn keyer(&self, store: &Store) -> Result<Keyer, OpenError> {
        store.memo().map(Keyer::new).map_err(|e| OpenError::Other(e.to_string()))
    }
}

/// The store's home: `$MSNR_HOME` when set, else the nearest folder at or above
/// the pipeline's that already has `.msnr`, else the nearest with `.git`, else
/// the pipeline's own folder.
#[must_use]
pub fn project_root(pipeline: &Path) -> PathBuf {
    if let Some(home) = std::env::var_os("MSNR_HOME") {
        return PathBuf::from(home);
    }
    let abs = std::path::absolute(pipeline).unwrap_or_else(|_| pipeline.to_path_buf());
    let dir = abs.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    for marker in [".msnr", ".git"] {
        if let Some(found) = dir.ancestors().find(|d| d.join(marker).exists()) {
            return found.to_path_buf();
        }
    }
    dir
}
