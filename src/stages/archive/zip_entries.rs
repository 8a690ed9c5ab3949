//! Reading a zip file entry by entry into a [`SafeTree`].

use std::io::{Read, Seek};
use std::path::Path;

use super::{ArchiveError, SafeTree};
use crate::stages::spec::Reporter;

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
