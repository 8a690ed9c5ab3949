//! [`Staging`]: a store entry being written. A stage fills
//! [`Staging::out_dir`] (a fresh folder under `.msnr/tmp/`), keeps resumable
//! state in [`Staging::work_dir`], and [`Staging::commit`] publishes the
//! result with one atomic rename. Dropping a `Staging` without committing
//! deletes its staging folder; the work folder stays for the next attempt.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use tempfile::TempDir;

use super::atomic::{sync_dir, sync_file};
use super::error::CacheError;
use super::hash::{list_tree, EntryKind};
use super::integrity::record_tree;
use super::key::CacheKey;
use super::store::{read_entry, remove_all, Entry, Meta, Store};

/// An entry being written; see the module docs.
#[derive(Debug)]
pub struct Staging {
    /// The key's digest.
    key: String,
    /// The key itself, recorded in `meta.json`.
    fields: CacheKey,
    /// `tmp/<key>.<pid>.<random>`: deleted on drop unless committed.
    dir: TempDir,
    /// `<dir>/out`.
    out_dir: PathBuf,
    /// `work/<key>`.
    work_dir: PathBuf,
    /// The store it goes into.
    store: Store,
    /// When the stage began, for the entry's wall time.
    started: Instant,
}

impl Staging {
    /// Creates the staging and work folders for `fields`.
    pub(super) fn new(store: &Store, fields: CacheKey) -> Result<Self, CacheError> {
        let key = fields.digest();
        let tmp = store.tmp_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{key}.{}.", std::process::id()))
            .tempdir_in(&tmp)
            .map_err(|e| CacheError::write(&tmp, e))?;
        let out_dir = dir.path().join("out");
        let work_dir = store.work_dir(&key);
        for d in [&out_dir, &work_dir] {
            fs::create_dir_all(d).map_err(|e| CacheError::write(d, e))?;
        }
        Ok(Self { key, fields, dir, out_dir, work_dir, store: store.clone(), started: Instant::now() })
    }

    /// The key's digest (the entry's future folder name).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The empty folder the stage writes its output into.
    #[must_use]
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// A folder stored with the entry (as `store/<key>/state/`) but outside `out/`: not part
    /// of the output hash. Created by the stage if it needs it.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The folder kept across attempts at this key (checkpoints, partial downloads);
    /// deleted by a successful commit.
    #[must_use]
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Publishes the output: hashes `out/` (recording each file's size, mtime and hash
    /// in `meta.json`), writes `meta.json`, fsyncs it all,
    /// renames the staging folder to `store/<key>` and deletes the work folder.
    /// If a complete entry for the key already exists it is kept and returned,
    /// and this output is deleted.
    ///
    /// # Errors
    /// When hashing, writing, syncing or the rename fails (the entry then does not exist).
    ///
    /// # Panics
    /// Never: the metadata always serializes.
    pub fn commit(self, metrics: BTreeMap<String, f64>, pins: BTreeMap<String, String>) -> Result<Entry, CacheError> {
        let (output, files) = record_tree(&self.out_dir)?;
        sync_tree(&self.out_dir)?;
        let meta = Meta {
            key: self.key.clone(),
            kind: self.fields.kind.clone(),
            output,
            metrics,
            pins,
            created: rfc3339(SystemTime::now()),
            msnr: env!("CARGO_PKG_VERSION").to_string(),
            key_fields: self.fields,
            seconds: Some(self.started.elapsed().as_secs_f64()),
            files: Some(files),
        };
        let meta_path = self.dir.path().join("meta.json");
        let json = serde_json::to_vec_pretty(&meta).expect("metadata always serializes");
        fs::write(&meta_path, json).map_err(|e| CacheError::write(&meta_path, e))?;
        sync_file(&meta_path)?;
        sync_dir(self.dir.path())?;
        let entry = install(&self.store, &self.dir.keep(), meta)?;
        remove_all(&self.work_dir)?;
        Ok(entry)
    }
}

/// Renames the staged folder to `store/<key>`, keeping an existing complete entry.
fn install(store: &Store, staged: &Path, meta: Meta) -> Result<Entry, CacheError> {
    let target = store.entries_dir().join(&meta.key);
    if let Some(existing) = read_entry(&target, &meta.key) {
        remove_all(staged)?;
        return Ok(existing);
    }
    if fs::symlink_metadata(&target).is_ok() {
        store.discard(&target)?; // an incomplete leftover (a crashed gc, a hand edit)
    }
    if let Err(e) = fs::rename(staged, &target) {
        remove_all(staged)?;
        return read_entry(&target, &meta.key).ok_or_else(|| CacheError::write(&target, e));
    }
    sync_dir(&store.entries_dir())?;
    Ok(Entry { key: meta.key.clone(), out_dir: target.join("out"), meta })
}

/// Fsyncs every file and folder under `root` (and `root`), in parallel.
fn sync_tree(root: &Path) -> Result<(), CacheError> {
    let entries = list_tree(root)?;
    entries.par_iter().try_for_each(|e| match e.kind {
        EntryKind::File { .. } => sync_file(&e.path),
        EntryKind::Dir => sync_dir(&e.path),
        EntryKind::Symlink { .. } => Ok(()),
    })?;
    sync_dir(root)
}

/// `t` as an RFC 3339 UTC timestamp (`2026-11-26T12:47:02Z`).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
/// Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms", `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::hash::hash_tree;
    use crate::cache::key::KeyValue;
    use std::time::Duration;

    fn key(n: i64) -> CacheKey {
        CacheKey {
            kind: "crop".into(),
            version: 1,
            params: BTreeMap::from([("size".into(), KeyValue::Int(n))]),
            inputs: BTreeMap::new(),
            seed: Some(7),
            torch: None,
        }
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn is_empty(dir: &Path) -> bool {
        fs::read_dir(dir).unwrap().next().is_none()
    }

    #[test]
    fn commit_publishes_output_meta_and_clears_work() {
        let (_dir, store) = setup();
        let staging = store.begin(&key(1)).unwrap();
        assert!(staging.out_dir().starts_with(store.tmp_dir()));
        fs::create_dir(staging.out_dir().join("shards")).unwrap();
        fs::write(staging.out_dir().join("shards/0.bin"), b"pixels").unwrap();
        fs::write(staging.work_dir().join("ckpt"), b"state").unwrap();
        let expected_output = hash_tree(staging.out_dir()).unwrap();
        let work = staging.work_dir().to_path_buf();
        let entry = staging.commit(BTreeMap::from([("loss".into(), f64::NAN)]), BTreeMap::new()).unwrap();
        assert_eq!(entry.key, key(1).digest());
        assert_eq!(fs::read(entry.out_dir.join("shards/0.bin")).unwrap(), b"pixels");
        assert_eq!(entry.meta.output, expected_output);
        assert_eq!(entry.meta.key_fields, key(1));
        assert!(entry.meta.metrics["loss"].is_nan());
        assert_eq!(store.get(&entry.key).unwrap().meta.output, expected_output);
        assert!(!work.exists());
        assert!(is_empty(&store.tmp_dir()));
    }

    #[test]
    fn a_dropped_staging_leaves_nothing_in_the_store() {
        let (_dir, store) = setup();
        let staging = store.begin(&key(2)).unwrap();
        fs::write(staging.out_dir().join("half.bin"), b"half written").unwrap();
        fs::write(staging.work_dir().join("ckpt"), b"step 100").unwrap();
        let work = staging.work_dir().to_path_buf();
        drop(staging);
        assert!(store.get(&key(2).digest()).is_none());
        assert!(is_empty(&store.entries_dir()));
        assert!(is_empty(&store.tmp_dir()));
        assert_eq!(fs::read(work.join("ckpt")).unwrap(), b"step 100", "work survives for resuming");
    }

    #[test]
    fn a_second_commit_of_the_same_key_keeps_the_first() {
        let (_dir, store) = setup();
        let first = store.begin(&key(3)).unwrap();
        let second = store.begin(&key(3)).unwrap();
        fs::write(first.out_dir().join("x"), b"first").unwrap();
        fs::write(second.out_dir().join("x"), b"second").unwrap();
        let a = first.commit(BTreeMap::new(), BTreeMap::new()).unwrap();
        let b = second.commit(BTreeMap::new(), BTreeMap::new()).unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read(b.out_dir.join("x")).unwrap(), b"first");
        assert!(is_empty(&store.tmp_dir()));
    }

    #[test]
    fn an_incomplete_leftover_entry_is_replaced() {
        let (_dir, store) = setup();
        let leftover = store.entries_dir().join(key(4).digest()).join("out");
        fs::create_dir_all(&leftover).unwrap();
        fs::write(leftover.join("junk"), b"junk").unwrap();
        let staging = store.begin(&key(4)).unwrap();
        fs::write(staging.out_dir().join("x"), b"good").unwrap();
        let entry = staging.commit(BTreeMap::new(), BTreeMap::from([("sha256".into(), "ab".into())])).unwrap();
        assert!(!entry.out_dir.join("junk").exists());
        assert_eq!(store.get(&entry.key).unwrap().meta.pins["sha256"], "ab");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_000_000_000)), "2001-09-09T01:46:40Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_825_600)), "2000-02-29T12:00:00Z");
    }
}
