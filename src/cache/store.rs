//! [`Store`]: the content-addressed store under `<project>/.msnr/`.
//!
//! ```text
//! .msnr/
//!   lock                 store-wide lock, held briefly for bookkeeping (tmp cleaning, gc, roots, lockfiles)
//!   runs.lock            held shared by every run, exclusively by gc (which waits for runs)
//!   locks/<key>          one lock per entry, held by the process building that key
//!   hashes.json          the file-hash memo
//!   store/<key>/out/     a stage's output, complete and never modified again
//!   store/<key>/meta.json  key, output hash, per-file records, metrics, pins, creation time
//!   tmp/                 staging folders of running stages (renamed into store/)
//!   work/<key>/          scratch kept across attempts at one key (checkpoints, partial downloads)
//!   quarantine/          entries found corrupted, moved aside (never deleted by msnr)
//! ```
//!
//! An entry exists only once its `meta.json` is in place, and it gets there by
//! one rename of a fully written and fsynced folder, so a killed run never
//! leaves an entry that looks complete. A writer holds the entry's lock
//! ([`Store::lock_entry`]) from the moment it finds the entry missing until it is
//! committed, so two processes never build one key, while unrelated keys build at
//! once; readers (`plan`, `status`) need no lock. A staging folder in `tmp/` is
//! garbage once its key's lock is free.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CacheError;
use super::integrity::FileRecord;
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
    /// Each file of `out/` by `/`-separated relative path: size, mtime and hash when stored
    /// (absent in entries stored before msnr recorded them; those are trusted as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, FileRecord>>,
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

/// How long `gc` keeps a work folder nothing refers to after its last change: it may hold
/// the checkpoint of an interrupted `train` (or a partial download) that a re-run resumes.
pub const WORK_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// What [`Store::gc`] removed (or would remove) and what it left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Each removed key with the bytes it held (entry and work folder), sorted by key.
    pub removed: Vec<(String, u64)>,
    /// The total bytes freed.
    pub freed: u64,
    /// Unreferenced keys left alone because a process holds their entry lock (building them).
    pub busy: Vec<String>,
    /// Unreferenced work folders kept because they changed within [`WORK_GRACE`] (resume state).
    pub recent_work: Vec<String>,
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

    /// Takes the store-wide lock, waiting (and saying so once on stderr) while another
    /// process holds it, then deletes staging folders left by killed runs. Hold it briefly
    /// (bookkeeping); building an entry takes [`Store::lock_entry`] instead.
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

    /// Marks this process as running stages until the guard is dropped (a shared lock on
    /// `.msnr/runs.lock`; any number of runs at once). Waits while `gc` runs.
    ///
    /// # Errors
    /// When the lock cannot be taken.
    pub fn running(&self) -> Result<StoreLock, CacheError> {
        let path = self.root.join("runs.lock");
        let waiting = format!("msnr: waiting for `msnr gc` to finish (holding {})", path.display());
        StoreLock::acquire_shared(&path, &waiting)
    }

    /// Waits until no run is running and keeps new ones from starting until the guard is
    /// dropped (an exclusive lock on `.msnr/runs.lock`): what a run builds is referred to by
    /// its lockfile only once it ends, so `gc` must not run beside one.
    ///
    /// # Errors
    /// When the lock cannot be taken.
    pub fn no_runs(&self) -> Result<StoreLock, CacheError> {
        let path = self.root.join("runs.lock");
        let waiting = format!("waiting for running msnr processes to finish (they hold {})", path.display());
        StoreLock::acquire_saying(&path, &waiting)
    }

    /// Takes the lock of entry `key` (see the module docs), waiting while another process
    /// builds it and saying once on stderr that `what` waits.
    ///
    /// # Errors
    /// [`CacheError::BadKey`], or when the lock cannot be taken.
    pub fn lock_entry(&self, key: &str, what: &str) -> Result<StoreLock, CacheError> {
        check_key(key)?;
        let path = self.entry_lock_path(key)?;
        StoreLock::acquire_saying(
            &path,
            &format!("msnr: {what}: waiting for another msnr process building it (holding {})", path.display()),
        )
    }

    /// Takes the lock of entry `key` if it is free.
    ///
    /// # Errors
    /// [`CacheError::Locked`] when another process (or handle) holds it.
    pub fn try_lock_entry(&self, key: &str) -> Result<StoreLock, CacheError> {
        check_key(key)?;
        StoreLock::try_acquire(&self.entry_lock_path(key)?)
    }

    /// Moves the entry of `key` aside to `quarantine/<key>.<unix time>` (never deleting it) so
    /// that it is rebuilt; returns where it went. Call with the entry's lock held.
    ///
    /// # Errors
    /// When the folder cannot be created or the entry moved.
    pub fn quarantine(&self, key: &str) -> Result<PathBuf, CacheError> {
        check_key(key)?;
        let dir = self.root.join("quarantine");
        fs::create_dir_all(&dir).map_err(|e| CacheError::write(&dir, e))?;
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let target = dir.join(format!("{key}.{secs}.{}", std::process::id()));
        let entry = self.entries_dir().join(key);
        fs::rename(&entry, &target).map_err(|e| CacheError::write(&entry, e))?;
        Ok(target)
    }

    /// The complete entry for `key`, if there is one.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Entry> {
        check_key(key).ok()?;
        read_entry(&self.entries_dir().join(key), key)
    }

    /// Starts writing the entry for `key`: a fresh staging folder under `tmp/`
    /// and the key's persistent work folder. Call with the entry's lock held.
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

    /// Removes every entry and work folder whose key is not in `keep` (only lists them when
    /// `dry_run`), except keys a process is building (their entry lock is held) and work
    /// folders changed within [`WORK_GRACE`]. Call with the store-wide lock held.
    ///
    /// # Errors
    /// When a folder cannot be listed, moved or deleted.
    pub fn gc(&self, keep: &HashSet<String>, dry_run: bool) -> Result<GcReport, CacheError> {
        let mut report = GcReport::default();
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        let mut names: Vec<String> = list_names(&self.entries_dir())?;
        names.extend(list_names(&self.work_root())?);
        names.sort();
        names.dedup();
        for name in names.into_iter().filter(|n| !keep.contains(n)) {
            let lock = match self.try_lock_entry(&name) {
                Ok(lock) => Some(lock),
                Err(CacheError::Locked { .. }) => {
                    report.busy.push(name);
                    continue;
                }
                Err(_) => None, // not a key: nobody can be building it
            };
            let work = self.work_root().join(&name);
            let recent = work.exists() && changed_within(&work, WORK_GRACE);
            if recent {
                report.recent_work.push(name.clone());
            }
            let entry = self.entries_dir().join(&name);
            for path in [Some(entry), (!recent).then_some(work)].into_iter().flatten() {
                if fs::symlink_metadata(&path).is_ok() {
                    *sizes.entry(name.clone()).or_default() += dir_size(&path);
                    if !dry_run {
                        self.discard(&path)?;
                    }
                }
            }
            if let Some(lock) = lock.filter(|_| !dry_run && !recent) {
                lock.remove();
            }
        }
        report.freed = sizes.values().sum();
        report.removed = sizes.into_iter().collect();
        if !dry_run {
            self.remove_orphan_locks()?;
        }
        Ok(report)
    }

    /// Deletes the free entry locks of keys with neither an entry nor a work folder.
    fn remove_orphan_locks(&self) -> Result<(), CacheError> {
        for name in list_names(&self.root.join("locks"))? {
            let orphan = !self.entries_dir().join(&name).exists() && !self.work_root().join(&name).exists();
            if let Some(lock) = orphan.then(|| self.try_lock_entry(&name).ok()).flatten() {
                lock.remove();
            }
        }
        Ok(())
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

    /// `.msnr/locks/<key>` (creating `locks/`).
    fn entry_lock_path(&self, key: &str) -> Result<PathBuf, CacheError> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir).map_err(|e| CacheError::write(&dir, e))?;
        Ok(dir.join(key))
    }

    /// Deletes what killed runs left in `tmp/`: every folder whose key's entry lock is free
    /// (`<key>.<pid>.*` staging, `discard.<key>.*`) or that names no key. Called with the
    /// store-wide lock held.
    fn clean_tmp(&self) -> Result<(), CacheError> {
        for name in list_names(&self.tmp_dir())? {
            let key = name.strip_prefix("discard.").unwrap_or(&name).split('.').next().unwrap_or_default();
            let held = match self.try_lock_entry(key) {
                Ok(_) | Err(CacheError::BadKey { .. }) => false,
                Err(_) => true,
            };
            if !held {
                remove_all(&self.tmp_dir().join(name))?;
            }
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

/// Whether anything under `path` (or `path` itself) was modified within `window` of now.
fn changed_within(path: &Path, window: std::time::Duration) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else { return false };
    let recent = meta.modified().ok().and_then(|t| t.elapsed().ok()).is_none_or(|age| age < window);
    recent
        || (meta.is_dir()
            && fs::read_dir(path).is_ok_and(|iter| iter.flatten().any(|e| changed_within(&e.path(), window))))
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

    /// Sets the mtime of `path` (and everything under it) `age` back.
    fn age(path: &Path, age: std::time::Duration) {
        age_path(path, std::time::SystemTime::now() - age);
    }

    fn age_path(path: &Path, t: std::time::SystemTime) {
        if path.is_dir() {
            for e in fs::read_dir(path).unwrap() {
                age_path(&e.unwrap().path(), t);
            }
        }
        fs::File::open(path).unwrap().set_modified(t).unwrap();
    }

    const OLD: std::time::Duration = std::time::Duration::from_secs(8 * 24 * 3600);

    #[test]
    fn gc_frees_unreferenced_entries_and_old_work_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _lock = store.lock().unwrap();
        let kept = commit(&store, 1, 100);
        let dropped = commit(&store, 2, 5000);
        let orphan_work = store.work_dir(&key(3).digest());
        fs::create_dir_all(&orphan_work).unwrap();
        fs::write(orphan_work.join("ckpt"), vec![0u8; 700]).unwrap();
        age(&orphan_work, OLD);
        let preview = store.gc(&HashSet::from([kept.key.clone()]), true).unwrap();
        assert!(orphan_work.exists() && store.get(&dropped.key).is_some(), "a dry run removes nothing");
        let report = store.gc(&HashSet::from([kept.key.clone()]), false).unwrap();
        assert_eq!(preview, report);
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

    /// The bug: gc deleted the work folder of an interrupted `train` (its checkpoint, the
    /// resume state) because no lockfile refers to a key that never completed.
    #[test]
    fn gc_keeps_a_recent_work_folder_that_holds_resume_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _lock = store.lock().unwrap();
        let resume = store.work_dir(&key(4).digest());
        fs::create_dir_all(resume.join("ckpt")).unwrap();
        fs::write(resume.join("ckpt/state.json"), b"{\"step\": 30}").unwrap();
        age(&resume, OLD);
        fs::write(resume.join("ckpt/state.json"), b"{\"step\": 40}").unwrap(); // a fresh checkpoint
        let report = store.gc(&HashSet::new(), false).unwrap();
        assert_eq!(report.recent_work, [key(4).digest()]);
        assert!(report.removed.is_empty(), "{report:?}");
        assert!(resume.join("ckpt/state.json").exists());
        age(&resume, OLD);
        let report = store.gc(&HashSet::new(), false).unwrap();
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(!resume.exists(), "a work folder untouched for longer than the grace period goes");
    }

    #[test]
    fn gc_leaves_alone_a_key_whose_entry_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = commit(&store, 5, 10);
        let building = store.lock_entry(&entry.key, "x").unwrap();
        let _lock = store.lock().unwrap();
        let report = store.gc(&HashSet::new(), false).unwrap();
        assert_eq!(report.busy, std::slice::from_ref(&entry.key));
        assert!(store.get(&entry.key).is_some());
        drop(building);
        store.gc(&HashSet::new(), false).unwrap();
        assert!(store.get(&entry.key).is_none());
        assert!(!store.root().join("locks").join(&entry.key).exists(), "the lock file goes with the entry");
        drop(store.lock_entry(&key(11).digest(), "x").unwrap());
        store.gc(&HashSet::new(), false).unwrap();
        assert!(fs::read_dir(store.root().join("locks")).unwrap().next().is_none(), "orphan locks go too");
    }

    #[test]
    fn an_entry_lock_excludes_others_but_not_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = Store::open(dir.path()).unwrap();
        let (a, b) = (key(6).digest(), key(7).digest());
        let held = store.lock_entry(&a, "a").unwrap();
        assert!(matches!(other.try_lock_entry(&a), Err(CacheError::Locked { .. })));
        other.try_lock_entry(&b).unwrap();
        let _global = other.try_lock().unwrap();
        drop(held);
        other.try_lock_entry(&a).unwrap();
        assert!(matches!(store.lock_entry("../x", "x"), Err(CacheError::BadKey { .. })));
    }

    #[test]
    fn cleaning_tmp_spares_staging_folders_of_keys_being_built() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let building = store.lock_entry(&key(8).digest(), "x").unwrap();
        let live = store.begin(&key(8)).unwrap();
        let dead = store.tmp_dir().join(format!("{}.999999.abc", key(9).digest()));
        fs::create_dir_all(&dead).unwrap();
        drop(store.lock().unwrap());
        assert!(live.out_dir().exists(), "a staging folder whose entry lock is held stays");
        assert!(!dead.exists(), "one whose entry lock is free is a killed run's leftover");
        drop(live);
        drop(building);
    }

    #[test]
    fn quarantine_moves_an_entry_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = commit(&store, 10, 10);
        let _building = store.lock_entry(&entry.key, "x").unwrap();
        let aside = store.quarantine(&entry.key).unwrap();
        assert!(store.get(&entry.key).is_none());
        assert!(aside.starts_with(store.root().join("quarantine")));
        assert_eq!(fs::read(aside.join("out/data.bin")).unwrap(), vec![1u8; 10]);
    }
}
