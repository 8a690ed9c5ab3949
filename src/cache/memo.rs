//! [`HashMemo`]: remembers file hashes by (size, mtime, inode) so unchanged
//! files are not read again. Persisted as JSON (`.msnr/hashes.json`):
//! `{"version": 1, "files": {"/abs/path": [size, mtime_ns, inode, "hex"]}}`.
//!
//! A memo entry is trusted only when all three stats still match; any change
//! re-hashes the file. Like git's "racily clean" rule, a file whose mtime lies
//! within [`RACY_WINDOW`] of the moment hashing started is hashed but not
//! remembered: it may still be written to within the same timestamp tick, and
//! its stats would then not show it. The memo is a cache: a malformed memo
//! file is discarded, never an error.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;
use super::error::CacheError;
use super::hash::{hash_file_sized, hash_tree_with, TreeEntry};

/// Files modified this close to (or after) the start of hashing are not memoized.
/// Larger than the kernel's coarse timestamp tick (at most 10 ms).
pub const RACY_WINDOW: Duration = Duration::from_millis(20);

/// The memo file's format version.
const FORMAT: u32 = 1;

/// File hashes by path, valid while the file's stats are unchanged.
#[derive(Debug)]
pub struct HashMemo {
    /// Where the memo is saved.
    path: PathBuf,
    /// Known files by absolute path.
    files: BTreeMap<String, MemoEntry>,
    /// Whether `files` changed since load.
    dirty: bool,
    /// Files actually read and hashed through this memo.
    files_hashed: u64,
    /// Bytes actually read and hashed through this memo.
    bytes_hashed: u64,
}

/// The stats that must match for a remembered hash to be reused.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode number (0 where there is none).
    pub inode: u64,
}

/// One remembered file: `[size, mtime_ns, inode, hash]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct MemoEntry(u64, i64, u64, String);

/// The memo file.
#[derive(Serialize, Deserialize)]
struct MemoFile {
    version: u32,
    files: BTreeMap<String, MemoEntry>,
}

impl FileStat {
    /// The stats of `meta`.
    #[must_use]
    pub fn of(meta: &Metadata) -> Self {
        Self { size: meta.len(), mtime_ns: mtime_ns(meta), inode: inode(meta) }
    }
}

impl HashMemo {
    /// Loads the memo saved at `path`; a missing or malformed file gives an empty memo.
    ///
    /// # Errors
    /// [`CacheError::Read`] when the file exists but cannot be read.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let path = path.into();
        let files = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<MemoFile>(&bytes) {
                Ok(memo) if memo.version == FORMAT => memo.files,
                _ => BTreeMap::new(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(CacheError::read(&path, e)),
        };
        Ok(Self { path, files, dirty: false, files_hashed: 0, bytes_hashed: 0 })
    }

    /// Saves the memo atomically if it changed.
    ///
    /// # Errors
    /// [`CacheError::Write`] naming the memo file.
    ///
    /// # Panics
    /// Never: the memo always serializes.
    pub fn save(&mut self) -> Result<(), CacheError> {
        if !self.dirty {
            return Ok(());
        }
        let file = MemoFile { version: FORMAT, files: std::mem::take(&mut self.files) };
        let json = serde_json::to_vec(&file).expect("the memo always serializes");
        self.files = file.files;
        write_atomic(&self.path, &json)?;
        self.dirty = false;
        Ok(())
    }

    /// The hex content hash of a file, or the tree hash of a folder (see
    /// [`super::hash`]), reusing remembered hashes of unchanged files.
    ///
    /// # Errors
    /// When something cannot be read or is neither a file, a folder nor a symlink.
    pub fn hash_path(&mut self, path: &Path) -> Result<String, CacheError> {
        let abs = std::path::absolute(path).map_err(|e| CacheError::read(path, e))?;
        let meta = fs::metadata(&abs).map_err(|e| CacheError::read(path, e))?;
        if meta.is_dir() {
            hash_tree_with(&abs, &mut |files| {
                let files: Vec<(&Path, &Metadata)> =
                    files.iter().map(|e: &&TreeEntry| (e.path.as_path(), &e.meta)).collect();
                self.hash_files(&files)
            })
        } else if meta.is_file() {
            Ok(self.hash_files(&[(&abs, &meta)])?[0].to_hex().to_string())
        } else {
            Err(CacheError::Unhashable { path: path.to_path_buf() })
        }
    }

    /// The hashes of `files` (absolute paths with their metadata), in order:
    /// remembered ones reused, the others hashed in parallel and remembered.
    ///
    /// # Errors
    /// [`CacheError::Read`] naming the first file that could not be read.
    pub fn hash_files(&mut self, files: &[(&Path, &Metadata)]) -> Result<Vec<blake3::Hash>, CacheError> {
        let started = SystemTime::now();
        let stats: Vec<FileStat> = files.iter().map(|(_, m)| FileStat::of(m)).collect();
        let mut out: Vec<Option<blake3::Hash>> =
            files.iter().zip(&stats).map(|((p, _), s)| self.lookup(p, *s)).collect();
        let misses: Vec<usize> = (0..files.len()).filter(|&i| out[i].is_none()).collect();
        let hashed: Vec<blake3::Hash> =
            misses.par_iter().map(|&i| hash_file_sized(files[i].0, stats[i].size)).collect::<Result<_, _>>()?;
        let trust_before = nanos_since_epoch(started) - i64::try_from(RACY_WINDOW.as_nanos()).unwrap_or(i64::MAX);
        for (&i, hash) in misses.iter().zip(hashed) {
            self.files_hashed += 1;
            self.bytes_hashed += stats[i].size;
            if stats[i].mtime_ns < trust_before {
                self.remember(files[i].0, stats[i], hash);
            }
            out[i] = Some(hash);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The remembered hash of `path`, if its stats still match.
    fn lookup(&self, path: &Path, stat: FileStat) -> Option<blake3::Hash> {
        let entry = self.files.get(path.to_str()?)?;
        if (entry.0, entry.1, entry.2) != (stat.size, stat.mtime_ns, stat.inode) {
            return None;
        }
        blake3::Hash::from_hex(&entry.3).ok()
    }

    /// Remembers a hash (paths that are not UTF-8 are never remembered).
    fn remember(&mut self, path: &Path, stat: FileStat, hash: blake3::Hash) {
        if let Some(key) = path.to_str() {
            self.files
                .insert(key.to_string(), MemoEntry(stat.size, stat.mtime_ns, stat.inode, hash.to_hex().to_string()));
            self.dirty = true;
        }
    }

    /// Forgets files that no longer exist (call before saving, e.g. from `gc`).
    pub fn prune_missing(&mut self) {
        let before = self.files.len();
        self.files.retain(|path, _| Path::new(path).exists());
        self.dirty |= self.files.len() != before;
    }

    /// How many files this memo actually read and hashed since it was loaded.
    #[must_use]
    pub fn files_hashed(&self) -> u64 {
        self.files_hashed
    }

    /// How many bytes this memo actually read and hashed since it was loaded.
    #[must_use]
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes_hashed
    }

    /// How many files the memo remembers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the memo remembers no file.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Nanoseconds since the Unix epoch (negative before it).
fn nanos_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// A file's mtime in nanoseconds since the epoch.
fn mtime_ns(meta: &Metadata) -> i64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
    }
    #[cfg(not(unix))]
    {
        meta.modified().map_or(0, nanos_since_epoch)
    }
}

/// A file's inode number (0 where the platform has none).
fn inode(meta: &Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::ino(meta)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// Sets a file's mtime an hour back, outside the racy window, as for files not touched recently.
    fn age(path: &Path, secs_ago: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs_ago);
        File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/a.bin");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"abc").unwrap();
        fs::write(dir.path().join("data/b.bin"), b"def").unwrap();
        age(&file, 3600);
        age(&dir.path().join("data/b.bin"), 3600);
        (dir, file)
    }

    #[test]
    fn unchanged_files_are_not_rehashed_even_after_reload() {
        let (dir, file) = setup();
        let memo_path = dir.path().join("hashes.json");
        let mut memo = HashMemo::load(&memo_path).unwrap();
        let h = memo.hash_path(&file).unwrap();
        assert_eq!(h, blake3::hash(b"abc").to_hex().as_str());
        assert_eq!(memo.hash_path(&file).unwrap(), h);
        assert_eq!(memo.files_hashed(), 1);
        memo.save().unwrap();
        let mut memo = HashMemo::load(&memo_path).unwrap();
        assert_eq!(memo.hash_path(&file).unwrap(), h);
        assert_eq!(memo.files_hashed(), 0);
    }

    #[test]
    fn a_content_change_with_the_same_size_and_mtime_is_seen_through_the_inode() {
        let (dir, file) = setup();
        let mut memo = HashMemo::load(dir.path().join("m.json")).unwrap();
        memo.hash_path(&file).unwrap();
        let stat = FileStat::of(&fs::metadata(&file).unwrap());
        // Replace the file by a new one (new inode) with equal size and mtime.
        let tmp = dir.path().join("new");
        fs::write(&tmp, b"xyz").unwrap();
        let mtime = UNIX_EPOCH + Duration::from_nanos(u64::try_from(stat.mtime_ns).unwrap());
        File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
        fs::rename(&tmp, &file).unwrap();
        assert_eq!(memo.hash_path(&file).unwrap(), blake3::hash(b"xyz").to_hex().as_str());
        assert_eq!(memo.files_hashed(), 2);
    }

    #[test]
    fn size_and_mtime_changes_rehash() {
        let (dir, file) = setup();
        let mut memo = HashMemo::load(dir.path().join("m.json")).unwrap();
        memo.hash_path(&file).unwrap();
        fs::write(&file, b"abcd").unwrap();
        age(&file, 3600);
        assert_eq!(memo.hash_path(&file).unwrap(), blake3::hash(b"abcd").to_hex().as_str());
        age(&file, 7200);
        memo.hash_path(&file).unwrap();
        assert_eq!(memo.files_hashed(), 3);
    }

    #[test]
    fn folders_rehash_only_changed_files() {
        let (dir, file) = setup();
        let folder = dir.path().join("data");
        let mut memo = HashMemo::load(dir.path().join("m.json")).unwrap();
        let first = memo.hash_path(&folder).unwrap();
        assert_eq!(first, super::super::hash::hash_tree(&folder).unwrap());
        assert_eq!(memo.files_hashed(), 2);
        assert_eq!(memo.hash_path(&folder).unwrap(), first);
        assert_eq!(memo.files_hashed(), 2);
        fs::write(&file, b"ABC").unwrap();
        age(&file, 10);
        let changed = memo.hash_path(&folder).unwrap();
        assert_ne!(changed, first);
        assert_eq!(memo.files_hashed(), 3);
    }

    #[test]
    fn recently_modified_files_are_hashed_but_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fresh");
        fs::write(&file, b"new").unwrap();
        let mut memo = HashMemo::load(dir.path().join("m.json")).unwrap();
        memo.hash_path(&file).unwrap();
        memo.hash_path(&file).unwrap();
        assert_eq!(memo.files_hashed(), 2);
        assert!(memo.is_empty());
    }

    #[test]
    fn a_malformed_memo_is_discarded_and_missing_files_pruned() {
        let (dir, file) = setup();
        let memo_path = dir.path().join("m.json");
        fs::write(&memo_path, b"{ not json").unwrap();
        let mut memo = HashMemo::load(&memo_path).unwrap();
        assert!(memo.is_empty());
        memo.hash_path(&file).unwrap();
        assert_eq!(memo.len(), 1);
        fs::remove_file(&file).unwrap();
        memo.prune_missing();
        assert!(memo.is_empty());
        memo.save().unwrap();
        assert!(HashMemo::load(&memo_path).unwrap().is_empty());
    }
}
