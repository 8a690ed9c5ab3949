//! The output folder of an extraction, written only through checks that keep
//! every entry inside it: entry names must be relative without `..`, no write
//! passes through a link that leaves the folder, and every link must resolve
//! inside it once extraction ends (the "zip slip" family of attacks).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{ArchiveError, Extracted};

/// A folder being filled with archive entries.
pub struct SafeTree {
    /// The folder, canonical (symlinks resolved).
    root: PathBuf,
    /// Symlinks created so far (entry name, path), checked by [`SafeTree::finish`].
    links: Vec<(String, PathBuf)>,
    /// Folders known to be real folders reached without passing a symlink; no
    /// entry can turn them into links, so they need no second look.
    real_dirs: HashSet<PathBuf>,
    stats: Extracted,
    /// Entries whose name an earlier entry had (the later one replaced it).
    duplicates: Vec<String>,
    /// Entries not extracted (FIFOs, devices), with their type.
    skipped: Vec<(String, String)>,
}

impl SafeTree {
    /// Starts filling `dest` (created if missing).
    ///
    /// # Errors
    /// When `dest` cannot be created or resolved.
    pub fn new(dest: &Path) -> io::Result<Self> {
        fs::create_dir_all(dest)?;
        let root = fs::canonicalize(dest)?;
        Ok(Self {
            real_dirs: HashSet::from([root.clone()]),
            root,
            links: Vec::new(),
            stats: Extracted::default(),
            duplicates: Vec::new(),
            skipped: Vec::new(),
        })
    }

    /// Files written so far.
    #[must_use]
    pub fn files(&self) -> u64 {
        self.stats.files
    }

    /// Writes a regular file `name` with the bytes of `data`, executable when
    /// `mode` (Unix permission bits) says so. A later entry replaces an earlier one.
    ///
    /// # Errors
    /// When `name` is unsafe, or reading or writing fails.
    pub fn file(&mut self, name: &Path, data: &mut dyn Read, mode: Option<u32>) -> Result<(), ArchiveError> {
        let path = self.place(name)?;
        let io = |e| entry_error(name, e);
        let mut out = File::create(&path).map_err(io)?;
        self.stats.bytes += io::copy(data, &mut out).map_err(io)?;
        self.stats.files += 1;
        set_executable(&path, mode.is_some_and(|m| m & 0o111 != 0)).map_err(io)
    }

    /// Creates the folder `name`.
    ///
    /// # Errors
    /// When `name` is unsafe or the folder cannot be created.
    pub fn dir(&mut self, name: &Path) -> Result<(), ArchiveError> {
        let rel = relative(name)?;
        self.ensure_dir(name, &rel).map(drop)
    }

    /// Creates a symlink `name` pointing at `target`, refused when `target` is
    /// absolute or, resolved from the link's folder, leaves the output folder.
    ///
    /// # Errors
    /// When the link is unsafe or cannot be created.
    pub fn symlink(&mut self, name: &Path, target: &Path) -> Result<(), ArchiveError> {
        let rel = relative(name)?;
        if let Some(reason) = escapes(rel.parent().unwrap_or(Path::new("")), target) {
            return Err(unsafe_entry(name, format!("is a symlink to `{}`, {reason}", target.display())));
        }
        let path = self.place(name)?;
        make_symlink(target, &path).map_err(|e| entry_error(name, e))?;
        self.links.push((name.display().to_string(), path));
        Ok(())
    }

    /// Creates `name` as a hard link to the earlier entry `target` (a path
    /// inside the archive), copying when the file system refuses hard links.
    ///
    /// # Errors
    /// When either name is unsafe or `target` is not a file extracted earlier.
    pub fn hardlink(&mut self, name: &Path, target: &Path) -> Result<(), ArchiveError> {
        let source = self.resolve_inside(name, target)?;
        let path = self.place(name)?;
        if fs::hard_link(&source, &path).is_err() {
            fs::copy(&source, &path).map_err(|e| entry_error(name, e))?;
        }
        self.stats.files += 1;
        Ok(())
    }

    /// Records an entry of a type not extracted (a FIFO, a device node).
    pub fn skipped(&mut self, name: &Path, kind: &str) {
        self.skipped.push((name.display().to_string(), kind.to_owned()));
    }

    /// What deserves a warning: duplicate entries and skipped ones, each a count and the
    /// first few names.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        const NAMED: usize = 5;
        let list = |names: Vec<String>| {
            let more = if names.len() > NAMED { ", ..." } else { "" };
            format!("{}{more}", names.into_iter().take(NAMED).collect::<Vec<_>>().join(", "))
        };
        let mut out = Vec::new();
        if !self.duplicates.is_empty() {
            let names = self.duplicates.iter().map(|n| format!("`{n}`")).collect();
            out.push(format!(
                "{} duplicate entr{} (the last of each name was kept): {}",
                self.duplicates.len(),
                if self.duplicates.len() == 1 { "y" } else { "ies" },
                list(names)
            ));
        }
        if !self.skipped.is_empty() {
            let names = self.skipped.iter().map(|(n, kind)| format!("`{n}` ({kind})")).collect();
            out.push(format!(
                "{} special entr{} skipped (not files, folders or links): {}",
                self.skipped.len(),
                if self.skipped.len() == 1 { "y" } else { "ies" },
                list(names)
            ));
        }
        out
    }

    /// Checks that every symlink resolves to something inside the folder (a
    /// chain of links could otherwise leave it), and returns what was written.
    ///
    /// # Errors
    /// Naming the first link that dangles or resolves outside.
    pub fn finish(self) -> Result<Extracted, ArchiveError> {
        for (entry, path) in &self.links {
            let reason = match fs::canonicalize(path) {
                Ok(real) if real.starts_with(&self.root) => continue,
                Ok(_) => "resolves (through other links) outside the output folder",
                Err(_) => "is a symlink whose target does not exist in the archive",
            };
            return Err(unsafe_entry(Path::new(entry), reason.to_owned()));
        }
        Ok(self.stats)
    }

    /// The path where entry `name` goes: its folders created safely, and any
    /// earlier non-folder entry of the same name removed (so a write never
    /// follows an old link).
    fn place(&mut self, name: &Path) -> Result<PathBuf, ArchiveError> {
        let rel = relative(name)?;
        let Some(file_name) = rel.file_name() else {
            return Err(unsafe_entry(name, "has an empty path".to_owned()));
        };
        let path = self.ensure_dir(name, rel.parent().unwrap_or(Path::new("")))?.join(file_name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(entry_error(name, io::Error::other("a folder of that name exists"))),
            Ok(_) => {
                self.duplicates.push(name.display().to_string());
                fs::remove_file(&path).map(|()| path).map_err(|e| entry_error(name, e))
            }
            Err(_) => Ok(path),
        }
    }

    /// Creates the folders of `rel` one by one under the root, refusing to pass
    /// through a symlink that resolves outside it or to something not a folder.
    fn ensure_dir(&mut self, name: &Path, rel: &Path) -> Result<PathBuf, ArchiveError> {
        let mut path = self.root.clone();
        let mut through_link = false;
        for part in rel.components() {
            path.push(part);
            if !through_link && self.real_dirs.contains(&path) {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    self.check_link_dir(name, &path)?;
                    through_link = true;
                }
                Ok(_) => return Err(entry_error(name, io::Error::other(format!("`{}` is a file", rel.display())))),
                Err(_) => fs::create_dir(&path).map_err(|e| entry_error(name, e))?,
            }
            if !through_link {
                self.real_dirs.insert(path.clone());
            }
        }
        Ok(path)
    }

    /// Refuses to write through the link at `path` unless it is a folder inside the root.
    fn check_link_dir(&self, name: &Path, path: &Path) -> Result<(), ArchiveError> {
        match fs::canonicalize(path) {
            Ok(real) if real.starts_with(&self.root) && real.is_dir() => Ok(()),
            _ => {
                let link = path.strip_prefix(&self.root).unwrap_or(path).display();
                let reason =
                    format!("passes through the symlink `{link}`, which does not lead to a folder inside the output");
                Err(unsafe_entry(name, reason))
            }
        }
    }

    /// The real path of the earlier entry `target`, which must be a regular
    /// file inside the root.
    fn resolve_inside(&self, name: &Path, target: &Path) -> Result<PathBuf, ArchiveError> {
        let shown = target.display();
        let inside = relative(target)
            .map_err(|_| unsafe_entry(name, format!("is a hard link to `{shown}`, outside the archive")))?;
        match fs::canonicalize(self.root.join(inside)) {
            Ok(real) if real.starts_with(&self.root) && real.is_file() => Ok(real),
            Ok(_) => Err(unsafe_entry(name, format!("is a hard link to `{shown}`, not a file inside the output"))),
            Err(e) => Err(entry_error(name, io::Error::new(e.kind(), format!("hard link target `{shown}`: {e}")))),
        }
    }
}

/// `name` as a relative path of plain components (`.` dropped).
///
/// # Errors
/// When `name` is absolute or has a `..` component.
fn relative(name: &Path) -> Result<PathBuf, ArchiveError> {
    let mut out = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(name, "has a `..` component".to_owned())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(name, "has an absolute path".to_owned()));
            }
        }
    }
    Ok(out)
}

/// Why a symlink in folder `base` (relative to the root) pointing at `target`
/// leaves the root, judged by its text alone; `None` when it stays inside.
fn escapes(base: &Path, target: &Path) -> Option<String> {
    let mut depth = base.components().count();
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            Component::ParentDir => return Some("which points outside the output folder".to_owned()),
            Component::RootDir | Component::Prefix(_) => return Some("an absolute path".to_owned()),
        }
    }
    None
}

/// An entry refused because it would write or point outside the folder.
fn unsafe_entry(name: &Path, reason: String) -> ArchiveError {
    ArchiveError::Unsafe { entry: name.display().to_string(), reason }
}

/// An I/O failure while extracting entry `name`.
fn entry_error(name: &Path, source: io::Error) -> ArchiveError {
    ArchiveError::Entry { entry: name.display().to_string(), source }
}

#[cfg(unix)]
fn make_symlink(target: &Path, path: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _path: &Path) -> io::Result<()> {
    Err(io::Error::other("symlinks in archives are supported on Unix only"))
}

#[cfg(unix)]
fn set_executable(path: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if executable {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_executable(_path: &Path, _executable: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, SafeTree) {
        let dir = tempfile::tempdir().unwrap();
        let tree = SafeTree::new(&dir.path().join("out")).unwrap();
        (dir, tree)
    }

    fn refusal(result: Result<(), ArchiveError>) -> String {
        match result {
            Err(ArchiveError::Unsafe { entry, reason }) => format!("{entry}: {reason}"),
            other => panic!("expected an unsafe-entry error, got {other:?}"),
        }
    }

    #[test]
    fn refuses_traversal_and_absolute_names() {
        let (_dir, mut tree) = tree();
        let data = &mut &b"x"[..];
        assert_eq!(refusal(tree.file(Path::new("a/../../evil"), data, None)), "a/../../evil: has a `..` component");
        assert_eq!(refusal(tree.file(Path::new("/etc/evil"), data, None)), "/etc/evil: has an absolute path");
        assert!(refusal(tree.file(Path::new("./"), data, None)).contains("empty path"));
    }

    #[test]
    fn writes_nested_files_and_replaces_earlier_entries() {
        let (dir, mut tree) = tree();
        tree.file(Path::new("./a/b/c.txt"), &mut &b"one"[..], None).unwrap();
        tree.file(Path::new("a/b/c.txt"), &mut &b"two"[..], Some(0o755)).unwrap();
        tree.dir(Path::new("a/empty/")).unwrap();
        assert_eq!(fs::read(dir.path().join("out/a/b/c.txt")).unwrap(), b"two");
        assert!(dir.path().join("out/a/empty").is_dir());
        assert_eq!(tree.finish().unwrap(), Extracted { files: 2, bytes: 6 });
    }

    #[test]
    fn judges_link_targets_by_text() {
        assert_eq!(escapes(Path::new("a/b"), Path::new("../../c")), None);
        assert!(escapes(Path::new("a/b"), Path::new("../../../c")).is_some());
        assert!(escapes(Path::new(""), Path::new("x/../../c")).is_some());
        assert!(escapes(Path::new(""), Path::new("/etc/passwd")).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_links_that_leave_the_folder() {
        let (_dir, mut tree) = tree();
        assert!(refusal(tree.symlink(Path::new("l"), Path::new("../outside"))).contains("points outside"));
        assert!(refusal(tree.symlink(Path::new("l"), Path::new("/etc"))).contains("absolute path"));
        assert!(refusal(tree.hardlink(Path::new("h"), Path::new("../x"))).contains("outside the archive"));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_link_chains_that_leave_the_folder() {
        // `sub/up -> ..` is the root (fine); `esc -> sub/up/..` reads as `sub` but
        // really is the root's parent.
        let (_dir, mut tree) = tree();
        tree.symlink(Path::new("sub/up"), Path::new("..")).unwrap();
        tree.symlink(Path::new("esc"), Path::new("sub/up/..")).unwrap();
        let write = tree.file(Path::new("esc/pwned"), &mut &b"x"[..], None);
        assert!(refusal(write).contains("passes through the symlink `esc`"));
        assert!(matches!(tree.finish(), Err(ArchiveError::Unsafe { entry, .. }) if entry == "esc"));
    }

    #[cfg(unix)]
    #[test]
    fn rechecks_folders_reached_through_a_replaced_link() {
        let (_dir, mut tree) = tree();
        tree.dir(Path::new("a")).unwrap();
        tree.symlink(Path::new("link"), Path::new("a")).unwrap();
        tree.file(Path::new("link/sub/x"), &mut &b"x"[..], None).unwrap();
        tree.symlink(Path::new("sub/up"), Path::new("..")).unwrap();
        tree.symlink(Path::new("link"), Path::new("sub/up/..")).unwrap();
        let write = tree.file(Path::new("link/sub/evil"), &mut &b"x"[..], None);
        assert!(refusal(write).contains("passes through the symlink `link`"));
    }

    #[cfg(unix)]
    #[test]
    fn keeps_links_inside_the_folder() {
        let (dir, mut tree) = tree();
        tree.file(Path::new("data/x.txt"), &mut &b"x"[..], None).unwrap();
        tree.symlink(Path::new("latest"), Path::new("data")).unwrap();
        tree.hardlink(Path::new("copy.txt"), Path::new("latest/x.txt")).unwrap();
        tree.file(Path::new("latest/y.txt"), &mut &b"y"[..], None).unwrap();
        assert_eq!(fs::read(dir.path().join("out/data/y.txt")).unwrap(), b"y");
        assert_eq!(fs::read(dir.path().join("out/copy.txt")).unwrap(), b"x");
        assert_eq!(tree.finish().unwrap().files, 3);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_dangling_links() {
        let (_dir, mut tree) = tree();
        tree.symlink(Path::new("l"), Path::new("missing")).unwrap();
        assert!(matches!(tree.finish(), Err(ArchiveError::Unsafe { reason, .. }) if reason.contains("does not exist")));
    }
}
