//! Reading a tar stream entry by entry into a [`SafeTree`].

use std::io::Read;
use std::path::PathBuf;

use tar::EntryType;

use super::{ArchiveError, SafeTree};
use crate::stages::spec::Reporter;

/// Extracts every entry of the tar stream `reader` (of `format`, named in
/// errors). Device nodes and FIFOs are skipped (the tree lists them for a
/// warning); PAX and GNU long-name records are applied by the reader.
///
/// # Errors
/// The first unsafe entry, a write failure, or a malformed stream.
pub fn extract(
    reader: impl Read,
    format: &'static str,
    tree: &mut SafeTree,
    reporter: &dyn Reporter,
) -> Result<(), ArchiveError> {
    let corrupt = |e: std::io::Error| ArchiveError::Corrupt { format, message: e.to_string() };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry.path().map_err(corrupt)?.into_owned();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mode = entry.header().mode().ok();
                tree.file(&name, &mut entry, mode)?;
            }
            EntryType::Directory => tree.dir(&name)?,
            EntryType::Symlink => tree.symlink(&name, &link_target(&entry, &name, format)?)?,
            EntryType::Link => tree.hardlink(&name, &link_target(&entry, &name, format)?)?,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => {}
            other => tree.skipped(&name, &format!("{other:?}")),
        }
        if tree.files() % 256 == 0 {
            reporter.progress(tree.files(), 0, "extracting");
        }
    }
    Ok(())
}

/// The sum of the sizes the entries of the tar stream `reader` declare (regular files;
/// links, folders and special entries take no room to speak of).
///
/// # Errors
/// A malformed stream.
pub fn declared_size(reader: impl Read, format: &'static str) -> Result<u64, ArchiveError> {
    let corrupt = |e: std::io::Error| ArchiveError::Corrupt { format, message: e.to_string() };
    let mut archive = tar::Archive::new(reader);
    let mut total = 0_u64;
    for entry in archive.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        if matches!(entry.header().entry_type(), EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse) {
            total = total.saturating_add(entry.size());
        }
    }
    Ok(total)
}

/// The link target of a symlink or hard link entry.
fn link_target<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &std::path::Path,
    format: &'static str,
) -> Result<PathBuf, ArchiveError> {
    let message = match entry.link_name() {
        Ok(Some(target)) => return Ok(target.into_owned()),
        Ok(None) => format!("link `{}` has no target", name.display()),
        Err(e) => e.to_string(),
    };
    Err(ArchiveError::Corrupt { format, message })
}
