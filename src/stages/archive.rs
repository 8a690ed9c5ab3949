//! Archives a download may be (zip, tar, gzip-compressed tar): how they are
//! recognised, and their extraction into a folder that no entry may leave
//! (no `..`, no absolute paths, no links resolving outside; see [`safe_tree`]).

mod safe_tree;
mod tar_entries;
mod zip_entries;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use super::spec::Reporter;
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
/// land outside it. Reports progress in files.
///
/// # Errors
/// The first unsafe entry, a write failure, or a malformed archive; what was
/// extracted so far stays in `dest` (the caller discards it).
pub fn extract(
    archive: &Path,
    format: Format,
    dest: &Path,
    reporter: &dyn Reporter,
) -> Result<Extracted, ArchiveError> {
    let corrupt = |e: io::Error| ArchiveError::Corrupt { format: format.name(), message: e.to_string() };
    let mut tree = SafeTree::new(dest).map_err(|e| ArchiveError::Entry { entry: ".".into(), source: e })?;
    let file = File::open(archive).map_err(corrupt)?;
    match format {
        Format::Zip => zip_entries::extract(file, &mut tree, reporter)?,
        Format::Tar => tar_entries::extract(io::BufReader::new(file), format.name(), &mut tree, reporter)?,
        Format::TarGz => {
            tar_entries::extract(GzDecoder::new(io::BufReader::new(file)), format.name(), &mut tree, reporter)?;
        }
    }
    tree.finish()
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
}
