//! Content hashes (blake3, hex) of files and folder trees.
//!
//! A file's hash is the plain blake3 of its bytes (the same as `b3sum`).
//! Large files are memory-mapped and hashed on all cores
//! (`Hasher::update_mmap_rayon`); small ones are read whole.
//!
//! A folder's hash covers its whole tree and nothing about the machine: for
//! every entry, in depth-first order with names sorted bytewise, its kind
//! (folder, file, executable file, symlink), its relative path with `/`
//! separators, and then the file's hash or the symlink's target text. Owners,
//! other permission bits and mtimes are left out. It uses blake3's key
//! derivation mode with its own context string, so a tree hash can never
//! equal the hash of a file.

use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::CacheError;

/// Files at least this big are memory-mapped and hashed in parallel.
pub const LARGE_FILE: u64 = 1 << 20;

/// blake3 key-derivation context of tree hashes (fixed forever: it is part of every folder's hash).
const TREE_CONTEXT: &str = "msnr 2026-11-26 folder tree hash v1";

/// One entry of a folder tree, found by [`list_tree`].
#[derive(Debug)]
pub struct TreeEntry {
    /// The full path.
    pub path: PathBuf,
    /// The path relative to the tree's root, `/`-separated bytes.
    pub rel: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Its metadata (not following symlinks).
    pub meta: Metadata,
}

/// The kinds of entries a tree hash distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A regular file; `exec` when any execute bit is set.
    File {
        /// Whether any execute permission bit is set.
        exec: bool,
    },
    /// A symlink, with its target as written (never followed).
    Symlink {
        /// The target's bytes.
        target: Vec<u8>,
    },
}

/// The blake3 hash of the file at `path`.
///
/// # Errors
/// [`CacheError::Read`] when the file cannot be read.
pub fn hash_file(path: &Path) -> Result<blake3::Hash, CacheError> {
    let size = fs::metadata(path).map_err(|e| CacheError::read(path, e))?.len();
    hash_file_sized(path, size)
}

/// [`hash_file`] for a file whose size is already known (picks the read strategy).
///
/// # Errors
/// [`CacheError::Read`] when the file cannot be read.
pub fn hash_file_sized(path: &Path, size: u64) -> Result<blake3::Hash, CacheError> {
    if size >= LARGE_FILE {
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(path).map_err(|e| CacheError::read(path, e))?;
        Ok(hasher.finalize())
    } else {
        fs::read(path).map(|bytes| blake3::hash(&bytes)).map_err(|e| CacheError::read(path, e))
    }
}

/// The hex hash of a file or a folder tree (symlinks at `path` itself are followed).
///
/// # Errors
/// When something cannot be read, or is neither file nor folder ([`CacheError::Unhashable`]).
pub fn hash_path(path: &Path) -> Result<String, CacheError> {
    let meta = fs::metadata(path).map_err(|e| CacheError::read(path, e))?;
    if meta.is_dir() {
        hash_tree(path)
    } else if meta.is_file() {
        Ok(hash_file_sized(path, meta.len())?.to_hex().to_string())
    } else {
        Err(CacheError::Unhashable { path: path.to_path_buf() })
    }
}

/// The hex tree hash of the folder `root`, hashing every file (in parallel).
///
/// # Errors
/// When something in the tree cannot be read or hashed.
pub fn hash_tree(root: &Path) -> Result<String, CacheError> {
    hash_tree_with(root, &mut |files| files.par_iter().map(|e| hash_file_sized(&e.path, e.meta.len())).collect())
}

/// Supplies the hashes of a tree's files: given every regular file, their hashes in the same order.
pub type FileHasher<'a> = dyn FnMut(&[&TreeEntry]) -> Result<Vec<blake3::Hash>, CacheError> + 'a;

/// The hex tree hash of `root`, with file hashes supplied by `hash_files`,
/// which receives every regular file of the tree and returns their hashes in
/// the same order (the memo serves known files from there).
///
/// # Errors
/// When the tree cannot be listed, or `hash_files` fails.
pub fn hash_tree_with(root: &Path, hash_files: &mut FileHasher) -> Result<String, CacheError> {
    let entries = list_tree(root)?;
    let files: Vec<&TreeEntry> = entries.iter().filter(|e| matches!(e.kind, EntryKind::File { .. })).collect();
    let mut file_hashes = hash_files(&files)?.into_iter();
    let mut hasher = blake3::Hasher::new_derive_key(TREE_CONTEXT);
    for entry in &entries {
        let file_hash = matches!(entry.kind, EntryKind::File { .. }).then(|| file_hashes.next()).flatten();
        write_entry(&mut hasher, entry, file_hash.as_ref());
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Feeds one entry's record into the tree hasher. Variable-length fields are
/// length-prefixed so no two trees share an encoding.
fn write_entry(hasher: &mut blake3::Hasher, entry: &TreeEntry, file_hash: Option<&blake3::Hash>) {
    let tag: &[u8] = match &entry.kind {
        EntryKind::Dir => b"d",
        EntryKind::File { exec: false } => b"f",
        EntryKind::File { exec: true } => b"x",
        EntryKind::Symlink { .. } => b"l",
    };
    hasher.update(tag);
    write_bytes(hasher, &entry.rel);
    if let EntryKind::Symlink { target } = &entry.kind {
        write_bytes(hasher, target);
    }
    if let Some(h) = file_hash {
        hasher.update(h.as_bytes());
    }
}

/// Writes a length-prefixed byte string.
fn write_bytes(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Every entry below `root` (not `root` itself), depth first, names sorted bytewise.
///
/// # Errors
/// [`CacheError::Read`] when a folder cannot be listed or an entry stat'ed;
/// [`CacheError::Unhashable`] for sockets, devices and fifos.
pub fn list_tree(root: &Path) -> Result<Vec<TreeEntry>, CacheError> {
    let mut out = Vec::new();
    walk(root, &[], &mut out)?;
    Ok(out)
}

/// Appends the entries of folder `dir` (relative path `rel`) to `out`, recursively.
fn walk(dir: &Path, rel: &[u8], out: &mut Vec<TreeEntry>) -> Result<(), CacheError> {
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
        .map_err(|e| CacheError::read(dir, e))?
        .map(|e| e.map(|e| e.file_name()).map_err(|e| CacheError::read(dir, e)))
        .collect::<Result<_, _>>()?;
    names.sort_by_cached_key(|n| name_bytes(n));
    for name in names {
        let path = dir.join(&name);
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(&name_bytes(&name));
        let meta = fs::symlink_metadata(&path).map_err(|e| CacheError::read(&path, e))?;
        let kind = entry_kind(&path, &meta)?;
        let is_dir = kind == EntryKind::Dir;
        out.push(TreeEntry { path: path.clone(), rel: child_rel.clone(), kind, meta });
        if is_dir {
            walk(&path, &child_rel, out)?;
        }
    }
    Ok(())
}

/// Classifies an entry from its (non-following) metadata.
fn entry_kind(path: &Path, meta: &Metadata) -> Result<EntryKind, CacheError> {
    let ft = meta.file_type();
    if ft.is_dir() {
        Ok(EntryKind::Dir)
    } else if ft.is_file() {
        Ok(EntryKind::File { exec: is_executable(meta) })
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| CacheError::read(path, e))?;
        Ok(EntryKind::Symlink { target: name_bytes(target.as_os_str()) })
    } else {
        Err(CacheError::Unhashable { path: path.to_path_buf() })
    }
}

/// The bytes of a file name or link target: raw on Unix, UTF-8 (with `/` separators) elsewhere.
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    #[cfg(unix)]
    {
        std::os::unix::ffi::OsStrExt::as_bytes(name).to_vec()
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy().replace('\\', "/").into_bytes()
    }
}

/// Whether any execute bit is set (always false where there are none).
fn is_executable(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/x.txt"), b"hello").unwrap();
        fs::write(dir.path().join("top.bin"), vec![7u8; 3000]).unwrap();
        dir
    }

    #[test]
    fn file_hash_is_plain_blake3() {
        let dir = tree();
        let h = hash_file(&dir.path().join("a/b/x.txt")).unwrap();
        assert_eq!(h, blake3::hash(b"hello"));
        assert_eq!(hash_path(&dir.path().join("a/b/x.txt")).unwrap(), blake3::hash(b"hello").to_hex().as_str());
    }

    #[test]
    fn large_files_take_the_mmap_path_and_agree() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * LARGE_FILE).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("big");
        fs::write(&path, &data).unwrap();
        assert_eq!(hash_file(&path).unwrap(), blake3::hash(&data));
    }

    #[test]
    fn tree_hash_is_pinned() {
        // The tree encoding is part of every output hash: change it on purpose only.
        // Recomputed independently by tests/fixtures/cache/reference_hashes.py (Python blake3).
        let dir = tree();
        assert_eq!(hash_tree(dir.path()).unwrap(), "f1440093a5a339580c672d17b6e4905f922b6c2474a1b50dcf7297425e922650");
    }

    #[test]
    fn tree_hash_ignores_mtimes_and_location() {
        let (a, b) = (tree(), tree());
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options().write(true).open(b.path().join("top.bin")).unwrap().set_modified(old).unwrap();
        assert_eq!(hash_tree(a.path()).unwrap(), hash_tree(b.path()).unwrap());
    }

    #[test]
    fn tree_hash_sees_content_renames_and_new_folders() {
        let dir = tree();
        let base = hash_tree(dir.path()).unwrap();
        fs::write(dir.path().join("a/b/x.txt"), b"hellO").unwrap();
        let edited = hash_tree(dir.path()).unwrap();
        fs::rename(dir.path().join("a/b/x.txt"), dir.path().join("a/b/y.txt")).unwrap();
        let renamed = hash_tree(dir.path()).unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();
        let with_dir = hash_tree(dir.path()).unwrap();
        let mut all = vec![base, edited, renamed, with_dir];
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
    }

    #[cfg(unix)]
    #[test]
    fn tree_hash_sees_the_exec_bit_and_symlink_targets() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tree();
        let base = hash_tree(dir.path()).unwrap();
        let file = dir.path().join("top.bin");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        let exec = hash_tree(dir.path()).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(hash_tree(dir.path()).unwrap(), base, "only the exec bit counts");
        symlink("top.bin", dir.path().join("link")).unwrap();
        let link = hash_tree(dir.path()).unwrap();
        fs::remove_file(dir.path().join("link")).unwrap();
        symlink("a/b/x.txt", dir.path().join("link")).unwrap();
        let relinked = hash_tree(dir.path()).unwrap();
        let mut all = vec![base, exec, link, relinked];
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn file_and_folder_hashes_never_meet() {
        let dir = tempfile::tempdir().unwrap();
        assert_ne!(hash_tree(dir.path()).unwrap(), blake3::hash(b"").to_hex().as_str());
    }

    #[test]
    fn a_missing_path_is_named() {
        let err = hash_path(Path::new("/no/such/thing")).unwrap_err();
        assert!(err.to_string().contains("/no/such/thing"), "{err}");
    }
}
