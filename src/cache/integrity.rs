//! Store integrity: every entry's `meta.json` records the size, mtime and blake3 hash of
//! each file of `out/` ([`FileRecord`]), written when the entry is committed (from the
//! hashes the output's tree hash is made of, so storing costs nothing more). Then:
//!
//! - [`Entry::check`] finds missing, resized, edited or extra files at three costs
//!   ([`Depth`]): stat only (`msnr status`), stat then hash the files whose mtime moved (`msnr
//!   run`, before a stored entry is used), or hash everything (`msnr status --check`), as
//!   `nix-store --verify --check-contents` does;
//! - readers of stored files ([`StoredFiles`]: datasets, model weights) hash what they read
//!   and compare, failing with [`CacheError::Corrupted`], which names the entry and the file.
//!
//! Entries written before the records existed (no `files` in `meta.json`) are trusted as
//! before: stat checks pass, and a full check compares the tree hash only.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::CacheError;
use super::hash::{hash_file_sized, hash_tree, hash_tree_with, list_tree, EntryKind, TreeEntry};
use super::memo::FileStat;
use super::store::{Entry, Meta};

/// What `meta.json` records about one file of an entry's `out/`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Size in bytes.
    pub size: u64,
    /// Modification time when stored (nanoseconds since the epoch): a file whose mtime
    /// moved since is re-hashed before use.
    pub mtime_ns: i64,
    /// The blake3 hash of its bytes (hex).
    pub blake3: String,
}

/// How thoroughly [`Entry::check`] looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Every recorded file exists with its size (no file is read).
    Stat,
    /// As [`Depth::Stat`], and files whose mtime changed since they were stored are re-hashed.
    Changed,
    /// Every file is re-hashed, and files nobody recorded are reported.
    Full,
}

/// What is wrong with one file of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A recorded file is gone.
    Missing,
    /// A recorded file has another size.
    Size {
        /// The size when stored.
        recorded: u64,
        /// The size now.
        found: u64,
    },
    /// A recorded file's bytes changed.
    Hash,
    /// A file (or folder, or link) that was not in the entry when it was stored.
    Unexpected,
    /// The file cannot be read.
    Unreadable(String),
    /// An entry without per-file records whose output no longer has its tree hash.
    TreeHash,
}

/// One damaged file of an entry, relative to its `out/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The path below `out/` (`/`-separated); `out/` itself for [`Problem::TreeHash`].
    pub file: String,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "missing"),
            Self::Size { recorded, found } => write!(f, "size {found} bytes, stored with {recorded}"),
            Self::Hash => write!(f, "hash mismatch"),
            Self::Unexpected => write!(f, "not part of the stored entry"),
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
            Self::TreeHash => write!(f, "content differs from the recorded output hash"),
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

/// The tree hash of `out` and the record of each of its files, hashing every file once (in
/// parallel), for [`Meta`] at commit.
///
/// # Errors
/// When the tree cannot be listed or a file read.
pub fn record_tree(out: &Path) -> Result<(String, BTreeMap<String, FileRecord>), CacheError> {
    let mut records = BTreeMap::new();
    let tree = hash_tree_with(out, &mut |files: &[&TreeEntry]| {
        let hashes: Vec<blake3::Hash> =
            files.par_iter().map(|e| hash_file_sized(&e.path, e.meta.len())).collect::<Result<_, _>>()?;
        for (e, h) in files.iter().zip(&hashes) {
            let stat = FileStat::of(&e.meta);
            let record = FileRecord { size: stat.size, mtime_ns: stat.mtime_ns, blake3: h.to_hex().to_string() };
            records.insert(String::from_utf8_lossy(&e.rel).into_owned(), record);
        }
        Ok(hashes)
    })?;
    Ok((tree, records))
}

impl Entry {
    /// The damaged files of this entry, looking as deep as `depth` says; empty when it is whole.
    ///
    /// # Errors
    /// Only when `out/` itself cannot be listed in a full check of an entry without
    /// per-file records (a missing or unreadable file is a [`Damage`], not an error).
    pub fn check(&self, depth: Depth) -> Result<Vec<Damage>, CacheError> {
        let Some(files) = &self.meta.files else {
            return self.check_legacy(depth);
        };
        let mut damage: Vec<Damage> = files
            .par_iter()
            .filter_map(|(rel, record)| {
                check_file(&self.out_dir.join(rel), record, depth).map(|problem| Damage { file: rel.clone(), problem })
            })
            .collect();
        if depth == Depth::Full {
            damage.extend(self.extra_files(files));
        }
        damage.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(damage)
    }

    /// An entry stored before per-file records: trusted unless a full check finds its tree
    /// hash changed.
    fn check_legacy(&self, depth: Depth) -> Result<Vec<Damage>, CacheError> {
        if depth != Depth::Full || hash_tree(&self.out_dir)? == self.meta.output {
            return Ok(Vec::new());
        }
        Ok(vec![Damage { file: "out/".into(), problem: Problem::TreeHash }])
    }

    /// Files (and links) in `out/` that the records do not list, and folders holding none of them.
    fn extra_files(&self, files: &BTreeMap<String, FileRecord>) -> Vec<Damage> {
        let Ok(entries) = list_tree(&self.out_dir) else {
            return Vec::new(); // `out/` unreadable: every recorded file is reported already
        };
        entries
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.rel).into_owned(), &e.kind))
            .filter(|(rel, kind)| match kind {
                EntryKind::Dir => !files.keys().any(|f| f.starts_with(&format!("{rel}/"))),
                _ => !files.contains_key(rel),
            })
            .map(|(file, _)| Damage { file, problem: Problem::Unexpected })
            .collect()
    }
}

/// What is wrong with the file at `path`, recorded as `record`, if anything.
fn check_file(path: &Path, record: &FileRecord, depth: Depth) -> Option<Problem> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Some(Problem::Unexpected),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Problem::Missing),
        Err(e) => return Some(Problem::Unreadable(e.to_string())),
    };
    let stat = FileStat::of(&meta);
    if stat.size != record.size {
        return Some(Problem::Size { recorded: record.size, found: stat.size });
    }
    let hash = match depth {
        Depth::Stat => false,
        Depth::Changed => stat.mtime_ns != record.mtime_ns,
        Depth::Full => true,
    };
    if !hash {
        return None;
    }
    match hash_file_sized(path, stat.size) {
        Ok(h) if h.to_hex().as_str() == record.blake3 => None,
        Ok(_) => Some(Problem::Hash),
        Err(e) => Some(Problem::Unreadable(e.to_string())),
    }
}

/// The records of the stored files under one folder of a store entry, for readers that
/// check what they read (see the module docs). Folders outside the store, and entries
/// stored before the records existed, have none: readers then trust what they read.
#[derive(Clone, Debug, Default)]
pub struct StoredFiles {
    /// The entry's key.
    key: String,
    /// The records by path relative to `out/`.
    files: BTreeMap<String, FileRecord>,
    /// `<entry>/out`.
    out_dir: PathBuf,
}

impl StoredFiles {
    /// The records of the store entry that `path` (a file or folder) lies in, if it lies in
    /// one (some ancestor is `<key>/out` beside a `meta.json` naming that key) that has records.
    #[must_use]
    pub fn of(path: &Path) -> Option<Self> {
        let abs = std::path::absolute(path).ok()?;
        let out_dir = abs.ancestors().find(|a| a.file_name().is_some_and(|n| n == "out") && is_entry(a))?;
        let bytes = fs::read(out_dir.parent()?.join("meta.json")).ok()?;
        let meta: Meta = serde_json::from_slice(&bytes).ok()?;
        Some(Self { key: meta.key, files: meta.files?, out_dir: out_dir.to_path_buf() })
    }

    /// Checks `bytes`, read from the stored file `path`, against its record.
    ///
    /// # Errors
    /// [`CacheError::Corrupted`] when the size or hash differs, or the entry has no record
    /// of a file by that name.
    pub fn check_bytes(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let record = self.record(path)?;
        let problem = if bytes.len() as u64 != record.size {
            Problem::Size { recorded: record.size, found: bytes.len() as u64 }
        } else if blake3::Hasher::new().update_rayon(bytes).finalize().to_hex().as_str() != record.blake3 {
            Problem::Hash
        } else {
            return Ok(());
        };
        Err(self.corrupted(path, &problem))
    }

    /// Reads and checks the stored file `path` (as [`StoredFiles::check_bytes`]).
    ///
    /// # Errors
    /// [`CacheError::Corrupted`] when it is missing, unreadable or differs from its record.
    pub fn check_file(&self, path: &Path) -> Result<(), CacheError> {
        let record = self.record(path)?;
        match check_file(path, record, Depth::Full) {
            None => Ok(()),
            Some(problem) => Err(self.corrupted(path, &problem)),
        }
    }

    /// Checks that the stored file `path` exists with its recorded size (reads nothing).
    ///
    /// # Errors
    /// [`CacheError::Corrupted`] when it is missing or resized.
    pub fn check_stat(&self, path: &Path) -> Result<(), CacheError> {
        let record = self.record(path)?;
        match check_file(path, record, Depth::Stat) {
            None => Ok(()),
            Some(problem) => Err(self.corrupted(path, &problem)),
        }
    }

    /// The record of `path`.
    fn record(&self, path: &Path) -> Result<&FileRecord, CacheError> {
        let rel = self.rel(path);
        self.files.get(&rel).ok_or_else(|| self.corrupted(path, &Problem::Unexpected))
    }

    /// `path` relative to `out/`, `/`-separated.
    fn rel(&self, path: &Path) -> String {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let rel = abs.strip_prefix(&self.out_dir).unwrap_or(&abs);
        rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    fn corrupted(&self, path: &Path, problem: &Problem) -> CacheError {
        CacheError::Corrupted { key: self.key.clone(), file: path.to_path_buf(), problem: problem.to_string() }
    }
}

/// Reads and checks `path` against its record when it lies in a store entry that has
/// records (a weights file, a config), as [`StoredFiles::check_file`]; elsewhere it is trusted.
///
/// # Errors
/// [`CacheError::Corrupted`] naming the entry and the file.
pub fn check_stored_file(path: &Path) -> Result<(), CacheError> {
    StoredFiles::of(path).map_or(Ok(()), |stored| stored.check_file(path))
}

/// Whether `out` is the `out/` of a store entry: `<store>/<key>/out` beside `<key>/meta.json`.
fn is_entry(out: &Path) -> bool {
    out.parent().is_some_and(|p| p.join("meta.json").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::{CacheKey, KeyValue};
    use crate::cache::store::Store;

    fn stored(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Store, Entry) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = CacheKey {
            kind: "crop".into(),
            version: 1,
            params: BTreeMap::from([("size".into(), KeyValue::Int(1))]),
            inputs: BTreeMap::new(),
            seed: None,
            torch: None,
        };
        let staging = store.begin(&key).unwrap();
        for (rel, bytes) in files {
            let path = staging.out_dir().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        let entry = staging.commit(BTreeMap::new(), BTreeMap::new()).unwrap();
        (dir, store, entry)
    }

    fn problems(entry: &Entry, depth: Depth) -> Vec<String> {
        entry.check(depth).unwrap().iter().map(ToString::to_string).collect()
    }

    /// Rewrites a file with `bytes`, moving its mtime as an editor would.
    fn edit(path: &Path, bytes: &[u8]) {
        let before = fs::metadata(path).unwrap().modified().unwrap();
        fs::write(path, bytes).unwrap();
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(before + std::time::Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn commit_records_every_file_and_a_whole_entry_checks_clean() {
        let (_dir, _store, entry) = stored(&[("a.bin", b"abc"), ("sub/b.bin", b"defg")]);
        let files = entry.meta.files.as_ref().unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["a.bin", "sub/b.bin"]);
        assert_eq!(files["sub/b.bin"].size, 4);
        assert_eq!(files["a.bin"].blake3, blake3::hash(b"abc").to_hex().as_str());
        for depth in [Depth::Stat, Depth::Changed, Depth::Full] {
            assert!(problems(&entry, depth).is_empty(), "{depth:?}");
        }
    }

    #[test]
    fn each_depth_finds_what_it_can_see() {
        let (_dir, _store, entry) = stored(&[("a.bin", b"abc"), ("b.bin", b"def"), ("c.bin", b"ghi")]);
        fs::remove_file(entry.out_dir.join("a.bin")).unwrap();
        edit(&entry.out_dir.join("b.bin"), b"dEf");
        fs::write(entry.out_dir.join("extra"), b"").unwrap();
        assert_eq!(problems(&entry, Depth::Stat), ["a.bin: missing"]);
        assert_eq!(problems(&entry, Depth::Changed), ["a.bin: missing", "b.bin: hash mismatch"]);
        assert_eq!(
            problems(&entry, Depth::Full),
            ["a.bin: missing", "b.bin: hash mismatch", "extra: not part of the stored entry"]
        );
        fs::write(entry.out_dir.join("c.bin"), b"longer").unwrap();
        assert!(problems(&entry, Depth::Stat).contains(&"c.bin: size 6 bytes, stored with 3".to_string()));
    }

    #[test]
    fn a_touched_but_unchanged_file_is_whole() {
        let (_dir, _store, entry) = stored(&[("a.bin", b"abc")]);
        edit(&entry.out_dir.join("a.bin"), b"abc");
        assert!(problems(&entry, Depth::Changed).is_empty());
    }

    #[test]
    fn an_entry_without_records_is_trusted_until_a_full_check() {
        let (_dir, store, entry) = stored(&[("a.bin", b"abc")]);
        let meta_path = entry.out_dir.parent().unwrap().join("meta.json");
        let mut meta = entry.meta.clone();
        meta.files = None;
        fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        let old = store.get(&entry.key).unwrap();
        assert!(old.meta.files.is_none());
        edit(&old.out_dir.join("a.bin"), b"abd");
        assert!(problems(&old, Depth::Changed).is_empty());
        assert_eq!(problems(&old, Depth::Full), ["out/: content differs from the recorded output hash"]);
        assert!(StoredFiles::of(&old.out_dir).is_none(), "readers trust it as before");
    }

    #[test]
    fn readers_find_the_records_and_name_entry_and_file() {
        let (_dir, _store, entry) = stored(&[("d/shard.bin", b"pixels")]);
        let file = entry.out_dir.join("d/shard.bin");
        let files = StoredFiles::of(&entry.out_dir.join("d")).unwrap();
        files.check_bytes(&file, b"pixels").unwrap();
        files.check_file(&file).unwrap();
        let err = files.check_bytes(&file, b"pixelz").unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(&entry.key[..12]), "{err}");
        assert!(err.contains("hash mismatch"), "{err}");
        assert!(err.contains("the store entry is corrupted; `msnr run` rebuilds it"), "{err}");
        fs::remove_file(&file).unwrap();
        assert!(files.check_file(&file).unwrap_err().to_string().contains("missing"));
        let outside = tempfile::tempdir().unwrap();
        assert!(StoredFiles::of(outside.path()).is_none());
    }
}
