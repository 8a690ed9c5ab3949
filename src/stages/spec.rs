//! What a stage implementation receives ([`StageSpec`]) and returns
//! ([`StageResult`] or [`StageError`]). The same structs cross the worker
//! boundary as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lang::Value;

/// Everything a stage needs to run: resolved parameters, input artifacts, and
/// where to write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageSpec {
    /// The stage instance name (for messages).
    pub name: String,
    /// The stage kind.
    pub kind: String,
    /// Resolved parameters; stage references are [`Value::Stage`].
    pub params: BTreeMap<String, Value>,
    /// Output folder of each upstream stage, by stage name (read only).
    pub inputs: BTreeMap<String, PathBuf>,
    /// An empty folder the stage fills; moved into the store only on success.
    pub out_dir: PathBuf,
    /// A folder kept across attempts with the same key (checkpoints, partial downloads).
    pub work_dir: PathBuf,
    /// The seed (the stage's `seed` parameter, or 0).
    pub seed: u64,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Content pins recorded by an earlier run in the lockfile (e.g. a download's
    /// `sha256` when the pipeline gave none); the stage verifies against them.
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
}

/// What a successful stage reports besides its output folder.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StageResult {
    /// Named scalar results (final loss, FID, image count, ...), recorded in the lockfile.
    pub metrics: BTreeMap<String, f64>,
    /// Content pins to record in the lockfile (e.g. `sha256` of a download), handed
    /// back in [`StageSpec::pins`] on later runs.
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
}

/// Why a stage failed. Every variant names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A parameter has a value the implementation cannot use.
    #[error("parameter `{name}`: {message}")]
    Param {
        /// The parameter.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// An input file is unreadable or malformed.
    #[error("{}: {message}", path.display())]
    Input {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O error while reading or writing `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Failed(String),
}

impl StageError {
    /// An I/O error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// A bad value for parameter `name`.
    pub fn param(name: &str, message: impl Into<String>) -> Self {
        Self::Param { name: name.into(), message: message.into() }
    }
}

/// Progress and log lines from a running stage.
pub trait Reporter: Sync {
    /// `done` of `total` units finished; `message` is a short status (loss, it/s).
    fn progress(&self, done: u64, total: u64, message: &str);
    /// A line worth keeping in the stage's log.
    fn log(&self, line: &str);
}

/// A reporter that drops everything (tests, benchmarks).
pub struct Silent;

impl Reporter for Silent {
    fn progress(&self, _: u64, _: u64, _: &str) {}
    fn log(&self, _: &str) {}
}

impl StageSpec {
    /// A spec with no upstream inputs that writes into `out_dir` and keeps its
    /// scratch in `work_dir`: seed 0, on CPU, no pins. For running a stage
    /// outside a pipeline (tests, benchmarks, library use).
    #[must_use]
    pub fn standalone(kind: &str, params: BTreeMap<String, Value>, out_dir: &Path, work_dir: &Path) -> Self {
        Self {
            name: kind.to_string(),
            kind: kind.to_string(),
            params,
            inputs: BTreeMap::new(),
            out_dir: out_dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            seed: 0,
            device: "cpu".to_string(),
            pins: BTreeMap::new(),
        }
    }

    /// The value of parameter `name`.
    ///
    /// # Errors
    /// When the kind has no such parameter (a stdlib/implementation mismatch).
    pub fn param(&self, name: &str) -> Result<&Value, StageError> {
        self.params.get(name).ok_or_else(|| StageError::param(name, "missing (not declared in the stdlib?)"))
    }

    /// Parameter `name` as an integer.
    ///
    /// # Errors
    /// When it is missing or not an integer.
    pub fn int(&self, name: &str) -> Result<i64, StageError> {
        self.param(name)?.as_int().ok_or_else(|| StageError::param(name, "expected an integer"))
    }

    /// Parameter `name` as a float (ints widen).
    ///
    /// # Errors
    /// When it is missing or not a number.
    pub fn float(&self, name: &str) -> Result<f64, StageError> {
        self.param(name)?.as_f64().ok_or_else(|| StageError::param(name, "expected a number"))
    }

    /// Parameter `name` as a string.
    ///
    /// # Errors
    /// When it is missing or not a string.
    pub fn str(&self, name: &str) -> Result<&str, StageError> {
        self.param(name)?.as_str().ok_or_else(|| StageError::param(name, "expected a string"))
    }

    /// Parameter `name` as a boolean.
    ///
    /// # Errors
    /// When it is missing or not a boolean.
    pub fn bool(&self, name: &str) -> Result<bool, StageError> {
        self.param(name)?.as_bool().ok_or_else(|| StageError::param(name, "expected a boolean"))
    }

    /// Parameter `name` as a local path.
    ///
    /// # Errors
    /// When it is missing or not a path.
    pub fn path(&self, name: &str) -> Result<&Path, StageError> {
        match self.param(name)? {
            Value::Path(p) => Ok(p),
            _ => Err(StageError::param(name, "expected a path")),
        }
    }

    /// The output folder of the stage that parameter `name` refers to.
    ///
    /// # Errors
    /// When the parameter is not a stage reference or its input is missing.
    pub fn input(&self, name: &str) -> Result<&Path, StageError> {
        match self.param(name)? {
            Value::Stage(stage) => self
                .inputs
                .get(stage)
                .map(PathBuf::as_path)
                .ok_or_else(|| StageError::param(name, format!("input stage `{stage}` was not provided"))),
            _ => Err(StageError::param(name, "expected a stage reference")),
        }
    }
}
