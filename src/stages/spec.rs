//! What a stage implementation receives ([`StageSpec`]) and returns
//! ([`StageResult`] or [`StageError`]). The same structs cross the worker
//! boundary as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check;
use super::kinds::KindParams;
use super::params::{Reader, Shape, Source};
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
    /// The kind's typed parameters as the checker read them (its [`KindParams`] struct,
    /// serialized); `null` for a spec built outside a pipeline, which [`StageSpec::typed`]
    /// then reads from `params`.
    #[serde(default)]
    pub typed: serde_json::Value,
    /// A folder stored with the entry but outside its output (not hashed, not read by other
    /// stages): where a stage leaves the state a longer run of the same configuration
    /// continues from (`train`'s final checkpoint). `None` outside a pipeline.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The stored run this one continues, if the runner found one (see
    /// [`Continuation`]); the stage starts from its state instead of from scratch.
    #[serde(default)]
    pub continue_from: Option<Continuation>,
}

/// A stored run of the same configuration that stopped earlier (`train` with fewer
/// `steps`, everything else equal): a longer run starts from its final state, so
/// lengthening training re-uses every step already made, and each length stays its own
/// cached entry (metric-versus-steps curves cache per point).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Continuation {
    /// The stage instance that made it when known (for messages), else its key's first digits.
    pub name: String,
    /// Its progress (`steps`).
    pub step: u64,
    /// Its entry's state folder ([`StageSpec::state_dir`] when it ran).
    pub state_dir: PathBuf,
    /// Its entry's output folder.
    pub out_dir: PathBuf,
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
    /// `done` of `total` units finished; `message` is a short status (loss, rate).
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
            typed: serde_json::Value::Null,
            state_dir: None,
            continue_from: None,
        }
    }

    /// The kind's typed parameters: deserialized from [`StageSpec::typed`] as the checker
    /// wrote them, or, for a spec built outside a pipeline, read from `params` (the stdlib's
    /// defaults filling what is absent) by the same reader `msnr check` uses.
    ///
    /// # Errors
    /// Every unusable parameter (the first named, the rest counted), or a spec whose typed
    /// parameters do not match `P` (a worker of another version).
    pub fn typed<P: KindParams>(&self) -> Result<P, StageError> {
        if !self.typed.is_null() {
            return serde_json::from_value(self.typed.clone())
                .map_err(|e| StageError::Failed(format!("stage `{}`: unreadable typed parameters: {e}", self.name)));
        }
        let mut params = check::defaults_for(&self.kind);
        params.extend(self.params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let none = |_: &str| Shape::UNKNOWN;
        let mut r = Reader::new(&params, &none, Some(&self.device));
        let got = P::read(&mut r);
        r.finish(got).map_err(|errors| {
            let first = &errors[0];
            let more = if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() };
            StageError::param(&first.param, format!("{}{more}", first.message))
        })
    }

    /// The value of parameter `name`.
    ///
    /// # Errors
    /// When the kind has no such parameter (a stdlib/implementation mismatch).
    pub fn param(&self, name: &str) -> Result<&Value, StageError> {
        self.params.get(name).ok_or_else(|| StageError::param(name, "missing (not declared in the stdlib?)"))
    }

    /// The folder a [`Source`] names: the local path, or the output folder of the stage.
    ///
    /// # Errors
    /// When the stage's output was not provided.
    pub fn source_dir(&self, source: &Source) -> Result<PathBuf, StageError> {
        match source {
            Source::Path(path) => Ok(path.clone()),
            Source::Stage(stage) => self
                .inputs
                .get(stage)
                .cloned()
                .ok_or_else(|| StageError::Failed(format!("input stage `{stage}` was not provided"))),
        }
    }
}
