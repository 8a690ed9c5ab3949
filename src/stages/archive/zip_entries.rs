//! Reading a zip file entry by entry into a [`SafeTree`].

use std::io::{Read, Seek};
use std::path::Path;

use super::{ArchiveError, SafeTree};
use crate::stages::spec::Reporter;

/// The sum of the uncompressed sizes the entries of the zip file `reader` declare in
/// its central directory.
///
/// # Errors
/// A malformed archive.
pub fn declared_size(reader: impl Read + Seek) -> Result<u64, ArchiveError> {
    let corrupt = |e: &dyn std::fmt::Display| ArchiveError::Corrupt { format: "zip", message: e.to_string() };
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| corrupt(&e))?;
    if let Some(total) = zip.decompressed_size() {
        return Ok(u64::try_from(total).unwrap_or(u64::MAX));
    }
    let mut total = 0_u64;
    for index in 0..zip.len() {
        total = total.saturating_add(zip.by_index_raw(index).map_err(|e| corrupt(&e))?.size());
    }
    Ok(total)
}

/// Extracts every entry of the zip file `reader`; Unix symlinks (mode
/// `S_IFLNK`, the target stored as the entry's data) become symlinks.
///
/// # Errors
/// The first unsafe entry, a write failure, or a malformed archive.
pub fn extract(reader: impl Read + Seek, tree: &mut SafeTree, reporter: &dyn Reporter) -> Result<(), ArchiveError> {
    let corrupt = |e: &dyn std::fmt::Display| ArchiveError::Corrupt { format: "zip", message: e.to_string() };
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| corrupt(&e))?;
    let total = zip.len() as u64;
    for index in 0..zip.len() {
        let mut file = zip.by_index(index).map_err(|e| corrupt(&e))?;
        let name = file.name().to_owned();
        let name = Path::new(&name);
        if file.is_symlink() {
            let mut target = String::new();
            file.read_to_string(&mut target).map_err(|e| corrupt(&e))?;
            tree.symlink(name, Path::new(&target))?;
        } else if file.is_dir() {
            tree.dir(name)?;
        } else {
            let mode = file.unix_mode();
            tree.file(name, &mut file, mode)?;
        }
        if index % 256 == 255 || index as u64 + 1 == total {
            reporter.progress(index as u64 + 1, total, "extracting");
        }
    }
    Ok(())
}
