//! Archives a download may be (zip, tar, gzip-compressed tar): how they are
//! recognised, and their extraction into a folder that no entry may leave
//! (no `..`, no absolute paths, no links resolving outside; see [`safe_tree`]).

mod safe_tree;
mod tar_entries;
mod zip_entries;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::GzDecoder;
use rayon::prelude::*;

use super::spec::{Reporter, Silent};
use safe_tree::SafeTree;

/// An archive format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A zip file (PKWARE APPNOTE).
    Zip,
    /// An uncompressed tar file (POSIX ustar, GNU and PAX extensions).
    Tar,
    /// A gzip-compressed tar file (`.tar.gz`, `.tgz`).
    TarGz,
}

/// What an extraction wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Regular files (hard links included).
    pub files: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

/// Why an archive could not be extracted. Each variant names the entry.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The entry would write or point outside the output folder.
    #[error("entry `{entry}` {reason}; refusing to extract it")]
    Unsafe {
        /// The entry's name as stored in the archive.
        entry: String,
        /// What makes it unsafe.
        reason: String,
    },
    /// Writing the entry failed.
    #[error("entry `{entry}`: {source}")]
    Entry {
        /// The entry's name as stored in the archive.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The file system lacks the room the entries declare.
    #[error(
        "not enough free disk space to extract {archive}: its entries declare {}, {} has {} free",
        human(*needed), dest.display(), human(*free)
    )]
    NoSpace {
        /// The archive's file name.
        archive: String,
        /// The sum of its entries' declared sizes.
        needed: u64,
        /// The folder extracted into.
        dest: PathBuf,
        /// Bytes free there for this user.
        free: u64,
    },
    /// The archive itself is unreadable or malformed.
    #[error("not a readable {format} archive: {message}")]
    Corrupt {
        /// The format it was read as.
        format: &'static str,
        /// What the reader reported.
        message: String,
    },
}

/// Magic bytes at the start of a zip file (a local file header, or the end
/// record of an empty archive).
const ZIP_MAGIC: [&[u8]; 2] = [b"PK\x03\x04", b"PK\x05\x06"];
/// The gzip member header's ID1, ID2 (RFC 1952 section 2.3.1).
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
/// `ustar` at byte 257 of a tar header (POSIX.1-1988 and GNU tar).
const USTAR_AT: usize = 257;

impl Format {
    /// The format of the file at `path`, from its magic bytes and from `name`'s
    /// extension (`.zip`, `.tar`, `.tar.gz`, `.tgz`); `None` for anything else,
    /// including a plain gzip file that holds no tar.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn detect(path: &Path, name: &str) -> io::Result<Option<Self>> {
        if let Some(format) = Self::from_extension(name) {
            return Ok(Some(format));
        }
        let head = read_head(File::open(path)?)?;
        if ZIP_MAGIC.iter().any(|m| head.starts_with(m)) {
            return Ok(Some(Self::Zip));
        }
        if head.starts_with(GZIP_MAGIC) {
            let inner = read_head(GzDecoder::new(File::open(path)?)).unwrap_or_default();
            return Ok(is_tar(&inner).then_some(Self::TarGz));
        }
        Ok(is_tar(&head).then_some(Self::Tar))
    }

    /// The format a file name's extension promises.
    fn from_extension(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let ends = |suffixes: &[&str]| suffixes.iter().any(|s| lower.ends_with(s));
        if ends(&[".zip"]) {
            Some(Self::Zip)
        } else if ends(&[".tar.gz", ".tgz"]) {
            Some(Self::TarGz)
        } else if ends(&[".tar"]) {
            Some(Self::Tar)
        } else {
            None
        }
    }

    /// The format's name in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Tar => "tar",
            Self::TarGz => "tar.gz",
        }
    }
}

/// The first 512 bytes (one tar header block) of `reader`, fewer if it is shorter.
fn read_head(reader: impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    reader.take(512).read_to_end(&mut head)?;
    Ok(head)
}

/// Whether `head` is a ustar header block.
fn is_tar(head: &[u8]) -> bool {
    head.get(USTAR_AT..USTAR_AT + 5) == Some(b"ustar")
}

/// Extracts the archive at `archive` into `dest`, refusing any entry that would
/// land outside it, after checking that `dest`'s file system has room for the
/// sizes the entries declare. Reports progress in files, and warns (as log lines)
/// about duplicate entries (the last one of a name wins) and skipped special
/// entries (FIFOs, devices).
///
/// # Errors
/// Too little free space, the first unsafe entry, a write failure, or a malformed
/// archive; what was extracted so far stays in `dest` (the caller discards it).
pub fn extract(
    archive: &Path,
    format: Format,
    dest: &Path,
    reporter: &dyn Reporter,
) -> Result<Extracted, ArchiveError> {
    extract_with(archive, format, dest, reporter, &free_space)
}

/// [`extract`] with the free space of a folder's file system read by `free` (tests
/// inject a figure instead of filling a disk).
///
/// # Errors
/// As [`extract`].
pub fn extract_with(
    archive: &Path,
    format: Format,
    dest: &Path,
    reporter: &dyn Reporter,
    free: &dyn Fn(&Path) -> io::Result<u64>,
) -> Result<Extracted, ArchiveError> {
    let corrupt = |e: io::Error| ArchiveError::Corrupt { format: format.name(), message: e.to_string() };
    let mut tree = SafeTree::new(dest).map_err(|e| ArchiveError::Entry { entry: ".".into(), source: e })?;
    let open = || File::open(archive).map_err(corrupt);
    let needed = match format {
        Format::Zip => zip_entries::declared_size(open()?)?,
        Format::Tar => tar_entries::declared_size(io::BufReader::new(open()?), format.name())?,
        Format::TarGz => tar_entries::declared_size(GzDecoder::new(io::BufReader::new(open()?)), format.name())?,
    };
    let available = free(dest).map_err(|e| ArchiveError::Entry { entry: ".".into(), source: e })?;
    if needed > available {
        let name = archive.file_name().unwrap_or(archive.as_os_str()).to_string_lossy().into_owned();
        return Err(ArchiveError::NoSpace { archive: name, needed, dest: dest.to_path_buf(), free: available });
    }
    match format {
        Format::Zip => zip_entries::extract(open()?, &mut tree, reporter)?,
        Format::Tar => tar_entries::extract(io::BufReader::new(open()?), format.name(), &mut tree, reporter)?,
        Format::TarGz => {
            tar_entries::extract(GzDecoder::new(io::BufReader::new(open()?)), format.name(), &mut tree, reporter)?;
        }
    }
    let name = archive.file_name().unwrap_or(archive.as_os_str()).to_string_lossy();
    for warning in tree.warnings() {
        reporter.log(&format!("warning: {name}: {warning}"));
    }
    tree.finish()
}

/// Bytes free for this user on the file system of `dir` (or of its nearest existing parent).
fn free_space(dir: &Path) -> io::Result<u64> {
    let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
    fs4::available_space(existing)
}

/// A byte count for people, exact in parentheses when rounded: `512 bytes`,
/// `12.3 MB (12345678 bytes)`, `1.43 GB (1430000000 bytes)`.
#[allow(clippy::cast_precision_loss)]
fn human(bytes: u64) -> String {
    match bytes {
        0..1_000_000 => format!("{bytes} bytes"),
        1_000_000..1_000_000_000 => format!("{:.1} MB ({bytes} bytes)", bytes as f64 / 1e6),
        _ => format!("{:.2} GB ({bytes} bytes)", bytes as f64 / 1e9),
    }
}

/// Unpacks an archive of archives one level further: when every entry of
/// `dir` is a regular file named `.zip`, `.tar`, `.tar.gz` or `.tgz` (as in
/// `ILSVRC2012_img_train.tar`, one tar per class), each is extracted into a
/// folder named after it without the extension, then removed. Returns what the
/// inner archives held, or `None` when `dir` is not such an archive.
///
/// # Errors
/// As [`extract`], the entry named with its inner archive.
pub fn extract_inner(dir: &Path, reporter: &dyn Reporter) -> Result<Option<Extracted>, ArchiveError> {
    let inner = inner_archives(dir);
    if inner.is_empty() {
        return Ok(None);
    }
    let (done, total) = (AtomicU64::new(0), inner.len() as u64);
    let parts: Vec<Extracted> = inner
        .par_iter()
        .map(|(path, format, folder)| {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            let extracted = extract(path, *format, folder, &Silent).map_err(|e| e.inside(&file))?;
            fs::remove_file(path).map_err(|e| ArchiveError::Entry { entry: file.to_string(), source: e })?;
            reporter.progress(done.fetch_add(1, Ordering::Relaxed) + 1, total, "extracting inner archives");
            Ok(extracted)
        })
        .collect::<Result<_, ArchiveError>>()?;
    let sum = |f: fn(&Extracted) -> u64| parts.iter().map(f).sum();
    Ok(Some(Extracted { files: sum(|e| e.files), bytes: sum(|e| e.bytes) }))
}

/// The inner archives of `dir` with their formats and target folders, or
/// nothing when any entry is not an archive file or two would share a folder.
fn inner_archives(dir: &Path) -> Vec<(PathBuf, Format, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let found: Option<Vec<_>> = entries.map(|entry| inner_archive(dir, &entry.ok()?)).collect();
    let found = found.unwrap_or_default();
    let folders: std::collections::BTreeSet<_> = found.iter().map(|(_, _, folder)| folder).collect();
    if folders.len() == found.len() {
        found
    } else {
        Vec::new()
    }
}

/// The format and target folder of `entry` if it is an archive file.
fn inner_archive(dir: &Path, entry: &fs::DirEntry) -> Option<(PathBuf, Format, PathBuf)> {
    let name = entry.file_name().to_string_lossy().into_owned();
    let format = Format::from_extension(&name).filter(|_| entry.file_type().is_ok_and(|t| t.is_file()))?;
    let stem = archive_stem(&name);
    (!stem.is_empty()).then(|| (entry.path(), format, dir.join(stem)))
}

/// `name` without its archive extension (`n01440764.tar` -> `n01440764`).
fn archive_stem(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    let suffix = [".tar.gz", ".tgz", ".tar", ".zip"].into_iter().find(|s| lower.ends_with(s)).unwrap_or("");
    &name[..name.len() - suffix.len()]
}

impl ArchiveError {
    /// The same error, its entry named inside the archive file `outer`.
    fn inside(self, outer: &str) -> Self {
        match self {
            Self::Unsafe { entry, reason } => Self::Unsafe { entry: format!("{outer}: {entry}"), reason },
            Self::Entry { entry, source } => Self::Entry { entry: format!("{outer}: {entry}"), source },
            Self::Corrupt { format, message } => Self::Corrupt { format, message: format!("{outer}: {message}") },
            no_space @ Self::NoSpace { .. } => no_space,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(bytes: &[u8], name: &str) -> Option<Format> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        Format::detect(&path, name).unwrap()
    }

    fn tar_bytes() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(1);
        builder.append_data(&mut header, "a.txt", &b"a"[..]).unwrap();
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn detects_by_magic_bytes() {
        assert_eq!(detect(b"PK\x03\x04rest", "download"), Some(Format::Zip));
        assert_eq!(detect(&tar_bytes(), "download"), Some(Format::Tar));
        assert_eq!(detect(&gzip(&tar_bytes()), "blob"), Some(Format::TarGz));
        assert_eq!(detect(&gzip(b"just text"), "mnist.csv.gz"), None, "a plain .gz is not an archive");
        assert_eq!(detect(b"hello", "notes.txt"), None);
        assert_eq!(detect(b"", "empty"), None);
    }

    #[test]
    fn detects_by_extension() {
        assert_eq!(detect(b"<html>", "x.ZIP"), Some(Format::Zip));
        assert_eq!(detect(b"x", "x.tgz"), Some(Format::TarGz));
        assert_eq!(detect(b"x", "x.tar.gz"), Some(Format::TarGz));
        assert_eq!(detect(b"x", "x.tar"), Some(Format::Tar));
    }

    #[test]
    fn reports_a_mislabelled_archive_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar.gz");
        std::fs::write(&path, b"<html>not found</html>").unwrap();
        let err = extract(&path, Format::TarGz, &dir.path().join("out"), &crate::stages::spec::Silent).unwrap_err();
        assert!(err.to_string().starts_with("not a readable tar.gz archive"), "{err}");
    }

    /// Keeps the log lines a stage reports.
    #[derive(Default)]
    struct Logged(std::sync::Mutex<Vec<String>>);

    impl Reporter for Logged {
        fn progress(&self, _: u64, _: u64, _: &str) {}
        fn log(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    /// A tar of `(name, type, data)` entries.
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Extracts `bytes` as a tar, with `free` bytes free; the result and the log lines.
    fn extract_tar(bytes: &[u8], free: u64) -> (tempfile::TempDir, Result<Extracted, ArchiveError>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.tar");
        std::fs::write(&path, bytes).unwrap();
        let logged = Logged::default();
        let result = extract_with(&path, Format::Tar, &dir.path().join("out"), &logged, &|_| Ok(free));
        let lines = logged.0.into_inner().unwrap();
        (dir, result, lines)
    }

    /// Issue 10, item 16: a later entry of the same name silently replaced an earlier one.
    #[test]
    fn duplicate_entries_are_warned_about_and_the_last_wins() {
        let regular = tar::EntryType::Regular;
        let bytes = tar_of(&[("a.txt", regular, b"first"), ("b.txt", regular, b"b"), ("a.txt", regular, b"second")]);
        let (dir, result, lines) = extract_tar(&bytes, u64::MAX);
        assert_eq!(result.unwrap().files, 3);
        assert_eq!(std::fs::read(dir.path().join("out/a.txt")).unwrap(), b"second");
        assert_eq!(lines, ["warning: data.tar: 1 duplicate entry (the last of each name was kept): `a.txt`"]);
    }

    /// Issue 10, item 16: FIFOs and device nodes were skipped with no warning worth the name.
    #[test]
    fn skipped_fifo_entries_are_warned_about() {
        let bytes = tar_of(&[("pipe", tar::EntryType::Fifo, b""), ("a.txt", tar::EntryType::Regular, b"a")]);
        let (dir, result, lines) = extract_tar(&bytes, u64::MAX);
        assert_eq!(result.unwrap().files, 1);
        assert!(!dir.path().join("out/pipe").exists());
        assert_eq!(lines, ["warning: data.tar: 1 special entry skipped (not files, folders or links): `pipe` (Fifo)"]);
    }

    /// Issue 10, item 16: extraction wrote until the disk was full.
    #[test]
    fn extraction_checks_free_space_against_declared_sizes_first() {
        let bytes =
            tar_of(&[("a.bin", tar::EntryType::Regular, &[7; 3000]), ("b.bin", tar::EntryType::Regular, &[1; 2000])]);
        let (dir, result, _) = extract_tar(&bytes, 4999);
        let err = result.unwrap_err().to_string();
        let out = dir.path().join("out");
        let expected = format!(
            "not enough free disk space to extract data.tar: its entries declare 5000 bytes, {} has 4999 bytes free",
            out.display()
        );
        assert_eq!(err, expected);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing was written");
        let (_, result, _) = extract_tar(&bytes, 5000);
        assert_eq!(result.unwrap(), Extracted { files: 2, bytes: 5000 });
    }

    #[test]
    fn zip_declared_sizes_come_from_the_central_directory() {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("a.bin", options).unwrap();
        zip.write_all(&[0; 1234]).unwrap();
        zip.start_file("b.bin", options).unwrap();
        zip.write_all(&[1; 766]).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert_eq!(zip_entries::declared_size(std::io::Cursor::new(bytes)).unwrap(), 2000);
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(12_345_678), "12.3 MB (12345678 bytes)");
        assert_eq!(human(1_430_000_000), "1.43 GB (1430000000 bytes)");
    }

    #[test]
    fn unpacks_an_archive_of_archives_into_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n01440764.tar"), tar_bytes()).unwrap();
        std::fs::write(dir.path().join("n01443537.TGZ"), gzip(&tar_bytes())).unwrap();
        let extracted = extract_inner(dir.path(), &crate::stages::spec::Silent).unwrap();
        assert_eq!(extracted, Some(Extracted { files: 2, bytes: 2 }));
        assert_eq!(std::fs::read(dir.path().join("n01440764/a.txt")).unwrap(), b"a");
        assert!(dir.path().join("n01443537/a.txt").is_file());
        assert!(!dir.path().join("n01440764.tar").exists());
    }

    #[test]
    fn leaves_mixed_folders_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inner.tar"), tar_bytes()).unwrap();
        std::fs::write(dir.path().join("README"), b"keep me packed").unwrap();
        assert_eq!(extract_inner(dir.path(), &crate::stages::spec::Silent).unwrap(), None);
        std::fs::remove_file(dir.path().join("README")).unwrap();
        std::fs::write(dir.path().join("inner.zip"), b"PK").unwrap();
        assert_eq!(extract_inner(dir.path(), &crate::stages::spec::Silent).unwrap(), None, "two archives, one folder");
        assert!(dir.path().join("inner.tar").is_file());
    }
}
