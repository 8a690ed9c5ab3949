//! [`Store`]: the content-addressed store under `<project>/.msnr/`.
//!
//! ```text
//! .msnr/
//!   lock                 advisory lock held by the process writing the store
//!   hashes.json          the file-hash memo
//!   store/<key>/out/     a stage's output, complete and never modified again
//!   store/<key>/meta.json  key, output hash, metrics, pins, creation time
//!   tmp/                 staging folders of running stages (renamed into store/)
//!   work/<key>/          scratch kept across attempts at one key (checkpoints, partial downloads)
//! ```
//!
//! An entry exists only once its `meta.json` is in place, and it gets there by
//! one rename of a fully written and fsynced folder, so a killed run never
//! leaves an entry that looks complete. Writers hold the lock
//! ([`Store::lock`]); readers (`plan`, `status`) need not.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CacheError;
use super::key::CacheKey;
use super::lock::StoreLock;
use super::memo::HashMemo;
use super::staging::Staging;

/// The folder under the project root that holds everything.
pub const STORE_DIR: &str = ".msnr";

/// The content-addressed store of one project.
#[derive(Debug, Clone)]
pub struct Store {
    /// `<project>/.msnr`.
    root: PathBuf,
}

/// What `meta.json` records about an entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Meta {
    /// The cache key (hex digest), equal to the entry's folder name.
    pub key: String,
    /// The stage kind.
    pub kind: String,
    /// The tree hash of `out/` (hex).
    pub output: String,
    /// Named scalar results the stage reported.
    #[serde(with = "super::exact_float::map")]
    pub metrics: BTreeMap<String, f64>,
    /// Content pins the stage reported (e.g. a download's `sha256`).
    pub pins: BTreeMap<String, String>,
    /// When the entry was committed (RFC 3339, UTC).
    pub created: String,
    /// The msnr version that wrote it.
    pub msnr: String,
    /// The full key, so `show` and `plan` can explain the entry.
    pub key_fields: CacheKey,
    /// Wall time of the run that made it, in seconds (absent in entries of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// A complete store entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The cache key (hex digest).
    pub key: String,
    /// The output folder (read only by convention).
    pub out_dir: PathBuf,
    /// The entry's metadata.
    pub meta: Meta,
}

/// What [`Store::gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Each removed key with the bytes it held (entry and work folder), sorted by key.
    pub removed: Vec<(String, u64)>,
    /// The total bytes freed.
    pub freed: u64,
}

impl Store {
    /// Opens (creating) the store of the project at `project_root`. When no
    /// other process holds the lock, leftover staging folders of killed runs are deleted.
    ///
    /// # Errors
    /// [`CacheError::Write`] when the folders cannot be created.
    pub fn open(project_root: &Path) -> Result<Self, CacheError> {
        let store = Self { root: project_root.join(STORE_DIR) };
        for dir in [store.entries_dir(), store.tmp_dir(), store.root.join("work")] {
            fs::create_dir_all(&dir).map_err(|e| CacheError::write(&dir, e))?;
        }
        if let Ok(lock) = store.try_lock() {
            drop(lock);
        }
        Ok(store)
    }

    /// `<project>/.msnr`.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store lock, waiting (and saying so once on stderr) while another
    /// process holds it, then deletes staging folders left by killed runs.
    ///
    /// # Errors
    /// When the lock cannot be taken or the leftovers cannot be deleted.
    pub fn lock(&self) -> Result<StoreLock, CacheError> {
        let lock = StoreLock::acquire(&self.lock_path())?;
        self.clean_tmp()?;
        Ok(lock)
    }

    /// Takes the store lock if it is free, like [`Store::lock`].
    ///
    /// # Errors
    /// [`CacheError::Locked`] naming the lock file when another process holds it.
    pub fn try_lock(&self) -> Result<StoreLock, CacheError> {
        let lock = StoreLock::try_acquire(&self.lock_path())?;
        self.clean_tmp()?;
        Ok(lock)
    }

    /// The complete entry for `key`, if there is one.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Entry> {
        check_key(key).ok()?;
        read_entry(&self.entries_dir().join(key), key)
    }

    /// Starts writing the entry for `key`: a fresh staging folder under `tmp/`
    /// and the key's persistent work folder. Call with the lock held.
    ///
    /// # Errors
    /// When the folders cannot be created.
    pub fn begin(&self, key: &CacheKey) -> Result<Staging, CacheError> {
        Staging::new(self, key.clone())
    }

    /// Keys of all complete entries, sorted.
    ///
    /// # Errors
    /// [`CacheError::Read`] when `store/` cannot be listed.
    pub fn keys(&self) -> Result<Vec<String>, CacheError> {
        let mut keys: Vec<String> =
            list_names(&self.entries_dir())?.into_iter().filter(|k| self.get(k).is_some()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Removes every entry and work folder whose key is not in `keep`. Call with the lock held.
    ///
    /// # Errors
    /// When a folder cannot be listed, moved or deleted.
    pub fn gc(&self, keep: &HashSet<String>) -> Result<GcReport, CacheError> {
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        for parent in [self.entries_dir(), self.work_root()] {
            for name in list_names(&parent)?.into_iter().filter(|n| !keep.contains(n)) {
                let path = parent.join(&name);
                *sizes.entry(name).or_default() += dir_size(&path);
                self.discard(&path)?;
            }
        }
        let freed = sizes.values().sum();
        Ok(GcReport { removed: sizes.into_iter().collect(), freed })
    }

    /// Deletes the staging folders this process made (`tmp/<key>.<pid>.*`), as a run stopped
    /// by Ctrl-C does before it exits. Best effort: a stage may still be writing into one (the
    /// next run that takes the lock deletes whatever is left).
    pub fn remove_own_staging(&self) {
        let pid = std::process::id().to_string();
        for name in list_names(&self.tmp_dir()).unwrap_or_default() {
            let mut parts = name.split('.');
            let (key, owner) = (parts.next().unwrap_or_default(), parts.next());
            if check_key(key).is_ok() && owner == Some(pid.as_str()) {
                let _ = remove_all(&self.tmp_dir().join(&name));
            }
        }
    }

    /// The file-hash memo of this project (`.msnr/hashes.json`).
    ///
    /// # Errors
    /// When the memo file exists but cannot be read.
    pub fn memo(&self) -> Result<HashMemo, CacheError> {
        HashMemo::load(self.root.join("hashes.json"))
    }

    /// The persistent work folder of `key` (it may not exist).
    #[must_use]
    pub fn work_dir(&self, key: &str) -> PathBuf {
        self.work_root().join(key)
    }

    /// `.msnr/store`.
    pub(super) fn entries_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// `.msnr/tmp`.
    pub(super) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `.msnr/work`.
    fn work_root(&self) -> PathBuf {
        self.root.join("work")
    }

    /// `.msnr/lock`.
    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Deletes everything in `tmp/` (only ever called with the lock held).
    fn clean_tmp(&self) -> Result<(), CacheError> {
        for name in list_names(&self.tmp_dir())? {
            remove_all(&self.tmp_dir().join(name))?;
        }
        Ok(())
    }

    /// Makes `path` disappear at once (a rename into `tmp/`), then deletes it.
    pub(super) fn discard(&self, path: &Path) -> Result<(), CacheError> {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let aside = tempfile::Builder::new()
            .prefix(&format!("discard.{name}."))
            .tempdir_in(self.tmp_dir())
            .map_err(|e| CacheError::write(self.tmp_dir(), e))?;
        let target = aside.path().join("x");
        fs::rename(path, &target).map_err(|e| CacheError::write(path, e))?;
        remove_all(aside.path())
    }
}

impl Entry {
    /// The entry's state folder (`store/<key>/state/`, see [`Staging::state_dir`]); it may
    /// not exist.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.out_dir.with_file_name("state")
    }

    /// Whether `out/` still hashes to the recorded output hash (detects a
    /// store entry edited or damaged after it was committed).
    ///
    /// # Errors
    /// When `out/` cannot be read.
    pub fn verify(&self) -> Result<bool, CacheError> {
        Ok(super::hash::hash_tree(&self.out_dir)? == self.meta.output)
    }
}

/// Reads the entry in folder `dir` if it is complete and belongs to `key`.
pub(super) fn read_entry(dir: &Path, key: &str) -> Option<Entry> {
    let bytes = fs::read(dir.join("meta.json")).ok()?;
    let meta: Meta = serde_json::from_slice(&bytes).ok()?;
    (meta.key == key).then(|| Entry { key: key.to_string(), out_dir: dir.join("out"), meta })
}

/// Rejects anything but 64 lowercase hex digits (keys become folder names).
///
/// # Errors
/// [`CacheError::BadKey`].
pub fn check_key(key: &str) -> Result<(), CacheError> {
    let ok = key.len() == 64 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CacheError::BadKey { key: key.to_string() })
    }
}

/// The names in a folder (none if it does not exist).
fn list_names(dir: &Path) -> Result<Vec<String>, CacheError> {
    let iter = match fs::read_dir(dir) {
        Ok(iter) => iter,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::read(dir, e)),
    };
    iter.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).map_err(|e| CacheError::read(dir, e)))
        .collect()
}

/// Deletes a file or folder tree; a missing one is fine.
pub(super) fn remove_all(path: &Path) -> Result<(), CacheError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CacheError::write(path, e)),
        _ => Ok(()),
    }
}

/// Total size of the files under `path` (symlinks count as themselves; unreadable parts as 0).
fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map_or(0, |iter| iter.flatten().map(|e| dir_size(&e.path())).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::KeyValue;

    pub(crate) fn key(n: i64) -> CacheKey {
        CacheKey {
            kind: "crop".into(),
            version: 1,
            params: BTreeMap::from([("size".into(), KeyValue::Int(n))]),
            inputs: BTreeMap::new(),
            seed: None,
            torch: None,
        }
    }

    fn commit(store: &Store, n: i64, bytes: usize) -> Entry {
        let staging = store.begin(&key(n)).unwrap();
        fs::write(staging.out_dir().join("data.bin"), vec![1u8; bytes]).unwrap();
        staging.commit(BTreeMap::from([("count".into(), 3.0)]), BTreeMap::new()).unwrap()
    }

    #[test]
    fn open_creates_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.root(), dir.path().join(".msnr"));
        for sub in ["store", "tmp", "work"] {
            assert!(store.root().join(sub).is_dir(), "{sub}");
        }
        assert!(store.keys().unwrap().is_empty());
    }

    #[test]
    fn get_returns_committed_entries_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _lock = store.lock().unwrap();
        let entry = commit(&store, 64, 10);
        assert_eq!(store.get(&key(64).digest()), Some(entry.clone()));
        assert_eq!(store.keys().unwrap(), std::slice::from_ref(&entry.key));
        assert!(store.get(&key(65).digest()).is_none());
        assert!(store.get("../../etc").is_none());
        assert!(entry.verify().unwrap());
        fs::write(entry.out_dir.join("data.bin"), b"tampered").unwrap();
        assert!(!entry.verify().unwrap(), "an edited output no longer verifies");
        fs::write(entry.out_dir.parent().unwrap().join("meta.json"), b"{ torn").unwrap();
        assert!(store.get(&entry.key).is_none(), "a malformed meta.json is not an entry");
    }

    #[test]
    fn leftover_tmp_folders_are_removed_by_open_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let leftover = store.tmp_dir().join("abc.123.xyz/out");
        fs::create_dir_all(&leftover).unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!leftover.exists());
        fs::create_dir_all(&leftover).unwrap();
        let lock = store.lock().unwrap();
        assert!(!leftover.exists());
        fs::create_dir_all(&leftover).unwrap();
        Store::open(dir.path()).unwrap();
        assert!(leftover.exists(), "a live writer's staging folders are left alone");
        drop(lock);
    }

    #[test]
    fn try_lock_fails_while_another_handle_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = Store::open(dir.path()).unwrap();
        let held = store.lock().unwrap();
        let err = other.try_lock().unwrap_err();
        assert!(err.to_string().contains(".msnr/lock"), "{err}");
        drop(held);
        other.try_lock().unwrap();
    }

    #[test]
    fn gc_frees_unreferenced_entries_and_work_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _lock = store.lock().unwrap();
        let kept = commit(&store, 1, 100);
        let dropped = commit(&store, 2, 5000);
        let orphan_work = store.work_dir(&key(3).digest());
        fs::create_dir_all(&orphan_work).unwrap();
        fs::write(orphan_work.join("ckpt"), vec![0u8; 700]).unwrap();
        let report = store.gc(&HashSet::from([kept.key.clone()])).unwrap();
        let removed: Vec<&str> = report.removed.iter().map(|(k, _)| k.as_str()).collect();
        let mut expected =
            vec![dropped.key.as_str(), &key(3).digest()].into_iter().map(String::from).collect::<Vec<_>>();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(report.freed >= 5700, "{report:?}");
        assert_eq!(store.keys().unwrap(), [kept.key]);
        assert!(!orphan_work.exists());
        assert!(fs::read_dir(store.tmp_dir()).unwrap().next().is_none());
    }
}
