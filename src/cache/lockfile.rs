//! [`Lockfile`]: `<pipeline>.msnr.lock`, committed next to a pipeline so a
//! reader can reproduce (and `msnr verify` can check) every stage: its key and
//! the full key fields, the output hash, seed, versions, metrics and pins.
//!
//! Written as pretty JSON with every object's keys sorted and a trailing
//! newline, so the same results always give the same bytes and a change shows
//! as a small diff in git. Writes are atomic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;
use super::error::CacheError;
use super::key::CacheKey;

/// The lockfile format version this build writes and reads.
pub const LOCKFILE_VERSION: u32 = 1;

/// The whole lockfile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Lockfile {
    /// Format version ([`LOCKFILE_VERSION`]).
    pub version: u32,
    /// Per stage instance name.
    pub stages: BTreeMap<String, LockEntry>,
}

/// What the lockfile records about one stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LockEntry {
    /// The stage kind.
    pub kind: String,
    /// The cache key (hex digest).
    pub key: String,
    /// The key's fields, so `plan` can say what changed since.
    pub key_fields: CacheKey,
    /// The output's tree hash (hex).
    pub output: String,
    /// The seed used, if the stage takes one.
    pub seed: Option<u64>,
    /// Versions of what produced it.
    pub versions: Versions,
    /// Named scalar results.
    #[serde(with = "super::exact_float::map")]
    pub metrics: BTreeMap<String, f64>,
    /// Content pins (a download's `sha256`), fed back to the stage on later runs.
    pub pins: BTreeMap<String, String>,
}

/// Versions of the software that produced an output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The msnr version.
    pub msnr: String,
    /// The stage kind's implementation version.
    pub kind: u32,
    /// The libtorch version, for torch stages.
    pub libtorch: Option<String>,
}

impl Default for Lockfile {
    fn default() -> Self {
        Self { version: LOCKFILE_VERSION, stages: BTreeMap::new() }
    }
}

impl Lockfile {
    /// The lockfile path of a pipeline: `celeba64.msnr` -> `celeba64.msnr.lock`.
    #[must_use]
    pub fn path_for(pipeline: &Path) -> PathBuf {
        let mut name = pipeline.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Reads the lockfile at `path`; `None` when there is none.
    ///
    /// # Errors
    /// [`CacheError::Read`] when it cannot be read, [`CacheError::Malformed`]
    /// (with line and column) when it is not a lockfile, and
    /// [`CacheError::FormatVersion`] when a newer msnr wrote it.
    pub fn read(path: &Path) -> Result<Option<Self>, CacheError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::read(path, e)),
        };
        let malformed = |source| CacheError::Malformed { path: path.into(), source };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(malformed)?;
        let found = value.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if found > u64::from(LOCKFILE_VERSION) {
            let found = u32::try_from(found).unwrap_or(u32::MAX);
            return Err(CacheError::FormatVersion { path: path.into(), found, supported: LOCKFILE_VERSION });
        }
        serde_json::from_slice(&bytes).map(Some).map_err(malformed)
    }

    /// Writes the lockfile to `path` atomically, in its canonical text form.
    ///
    /// # Errors
    /// [`CacheError::Write`] naming `path`.
    pub fn write(&self, path: &Path) -> Result<(), CacheError> {
        write_atomic(path, self.to_text().as_bytes())
    }

    /// Checks that the lockfile at `path` can be written (its folder takes a new file), so a
    /// run fails before it starts rather than after hours of training.
    ///
    /// # Errors
    /// [`CacheError::Write`] naming `path`.
    pub fn check_writable(path: &Path) -> Result<(), CacheError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if path.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a folder");
            return Err(CacheError::write(path, source));
        }
        let probe = dir.join(format!(".msnr-probe.{}", std::process::id()));
        let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
        created.and_then(|_| std::fs::remove_file(&probe)).map_err(|e| CacheError::write(path, e))
    }

    /// The canonical text: pretty JSON, keys sorted at every level, trailing newline.
    ///
    /// # Panics
    /// Never: a lockfile always serializes.
    #[must_use]
    pub fn to_text(&self) -> String {
        let value = sorted(serde_json::to_value(self).expect("a lockfile always serializes"));
        let mut text = serde_json::to_string_pretty(&value).expect("a JSON value always serializes");
        text.push('\n');
        text
    }
}

/// `value` with every object's keys in sorted order (whatever `serde_json`'s map type).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut items: Vec<(String, serde_json::Value)> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(items.into_iter().collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{KeyValue, TorchEnv};

    fn sample() -> Lockfile {
        let key_fields = CacheKey {
            kind: "train".into(),
            version: 3,
            params: BTreeMap::from([("lr".into(), KeyValue::Float(1e-4))]),
            inputs: BTreeMap::new(),
            seed: Some(0),
            torch: Some(TorchEnv { device: "cpu".into(), libtorch: "2.11.0".into() }),
        };
        let entry = LockEntry {
            kind: "train".into(),
            key: key_fields.digest(),
            key_fields,
            output: "ab".repeat(32),
            seed: Some(0),
            versions: Versions { msnr: "0.1.0".into(), kind: 3, libtorch: Some("2.11.0".into()) },
            metrics: BTreeMap::from([("loss".into(), 0.125), ("diverged".into(), f64::INFINITY)]),
            pins: BTreeMap::new(),
        };
        Lockfile { version: LOCKFILE_VERSION, stages: BTreeMap::from([("model".into(), entry)]) }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = Lockfile::path_for(&dir.path().join("mnist.msnr"));
        assert!(path.ends_with("mnist.msnr.lock"));
        assert_eq!(Lockfile::read(&path).unwrap(), None);
        sample().write(&path).unwrap();
        assert_eq!(Lockfile::read(&path).unwrap(), Some(sample()));
    }

    #[test]
    fn text_is_sorted_pretty_and_stable() {
        let text = sample().to_text();
        assert!(text.ends_with("}\n"));
        assert_eq!(text, sample().to_text());
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("      \"") && l.contains("\": "))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_unstable();
        assert_eq!(keys, sorted_keys);
        assert!(keys.starts_with(&["key", "key_fields", "kind", "metrics"]), "{keys:?}");
        assert!(text.contains("\"diverged\": \"inf\""), "{text}");
    }

    #[test]
    fn a_malformed_lockfile_is_named_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.msnr.lock");
        std::fs::write(&path, "{\n  \"version\": 1,\n  \"stages\": {\"a\": 3}\n}\n").unwrap();
        let err = Lockfile::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} is malformed", path.display())), "{err}");
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(&path, "not json").unwrap();
        assert!(Lockfile::read(&path).unwrap_err().to_string().contains("x.msnr.lock"));
    }

    #[test]
    fn a_lockfile_that_is_a_folder_is_not_writable_and_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.msnr.lock");
        Lockfile::check_writable(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = Lockfile::check_writable(&path).unwrap_err().to_string();
        assert!(err.contains("x.msnr.lock"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the check leaves no file behind");
    }

    #[test]
    fn a_newer_format_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.msnr.lock");
        std::fs::write(&path, r#"{"version": 9, "stages": {}, "future": true}"#).unwrap();
        let err = Lockfile::read(&path).unwrap_err().to_string();
        assert!(err.contains("format version 9") && err.contains("upgrade msnr"), "{err}");
    }
}
