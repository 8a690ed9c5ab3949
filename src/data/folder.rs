//! Listing an image folder as torchvision's `ImageFolder` does: each sub-folder
//! of the root is a class, classes are numbered in sorted name order, and each
//! class's files are found by a sorted recursive walk
//! (`torchvision.datasets.folder.make_dataset`).
//!
//! Two deliberate departures: a root without sub-folders is an unlabelled dataset
//! (its images, stored as the one class [`SINGLE_CLASS`]: every consumer treats a
//! dataset of fewer than two classes as unlabelled, so `train` is unconditional and
//! `classifier` refuses it), and hidden entries (names starting with `.`, such as
//! macOS `._x.jpg` resource forks) are skipped.
//!
//! Files that are not imported are listed in [`ImageFolder::dropped`], and the stages
//! warn about them ([`ImageFolder::dropped_warning`]): an image directly in a root that
//! has class folders (`ImageFolder` ignores it too), and a file that is not a PNG or JPEG.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::DataError;

/// Extensions decoded (case-insensitive).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];
/// Extensions `ImageFolder` accepts that this build cannot decode: an error, not a silent skip.
pub const UNSUPPORTED: &[&str] = &["bmp", "ppm", "pgm", "tif", "tiff", "webp"];
/// The one class name of an unlabelled dataset (a root without sub-folders).
pub const SINGLE_CLASS: &str = "0";
/// How many dropped files a warning names.
const NAMED: usize = 5;

/// The images of a folder and their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFolder {
    /// Class names, sorted; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Every image with its label, classes in order, each class in walk order.
    pub files: Vec<(PathBuf, i64)>,
    /// Files found and not imported, with why, in walk order (hidden ones not counted).
    pub dropped: Vec<(PathBuf, Dropped)>,
}

/// Why a file was not imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// An image directly in a root that has class folders: it belongs to no class.
    BesideClasses,
    /// Not a PNG or JPEG file (by extension).
    NotAnImage,
}

impl ImageFolder {
    /// A warning naming how many files were not imported and the first few (relative to
    /// `root`), with why; `None` when every file was imported.
    #[must_use]
    pub fn dropped_warning(&self, root: &Path) -> Option<String> {
        if self.dropped.is_empty() {
            return None;
        }
        let named: Vec<String> = self
            .dropped
            .iter()
            .take(NAMED)
            .map(|(path, why)| {
                let why = match why {
                    Dropped::BesideClasses => "beside the class folders",
                    Dropped::NotAnImage => "not PNG/JPEG",
                };
                format!("{} ({why})", path.strip_prefix(root).unwrap_or(path).display())
            })
            .collect();
        let more = if self.dropped.len() > NAMED { ", ..." } else { "" };
        Some(format!(
            "warning: {} file(s) under {} not imported: {}{more}",
            self.dropped.len(),
            root.display(),
            named.join(", ")
        ))
    }
}

/// Lists the images under `root`.
///
/// # Errors
/// When `root` is not a readable folder, a class holds no image, no image is
/// found at all, or a file has an image extension this build cannot decode.
pub fn scan(root: &Path) -> Result<ImageFolder, DataError> {
    if !root.is_dir() {
        return Err(DataError::invalid(root, "not a folder of images"));
    }
    let (dirs, _) = entries(root)?;
    let mut dropped = Vec::new();
    let top = images_in(root, &mut dropped)?;
    if dirs.is_empty() {
        if top.is_empty() {
            return Err(no_images(root));
        }
        let files = top.into_iter().map(|f| (f, 0)).collect();
        return Ok(ImageFolder { classes: vec![SINGLE_CLASS.into()], files, dropped });
    }
    dropped.extend(top.into_iter().map(|f| (f, Dropped::BesideClasses)));
    let mut folder = ImageFolder { classes: Vec::new(), files: Vec::new(), dropped };
    for (label, dir) in (0_i64..).zip(&dirs) {
        let found = walk(dir, &mut folder.dropped)?;
        if found.is_empty() {
            return Err(no_images(dir));
        }
        folder.classes.push(file_name(dir));
        folder.files.extend(found.into_iter().map(|f| (f, label)));
    }
    Ok(folder)
}

fn no_images(dir: &Path) -> DataError {
    DataError::invalid(dir, format!("no image files found (extensions: {})", EXTENSIONS.join(", ")))
}

/// The images under `dir`, recursively: like `sorted(os.walk(dir, followlinks=True))`,
/// folders in sorted path order, files sorted within each.
fn walk(dir: &Path, dropped: &mut Vec<(PathBuf, Dropped)>) -> Result<Vec<PathBuf>, DataError> {
    let mut seen = HashSet::new();
    let mut folders = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let canonical = fs::canonicalize(&d).map_err(|e| DataError::io(&d, e))?;
        if !seen.insert(canonical) {
            continue; // reached again through a symlink: walk it once
        }
        pending.extend(entries(&d)?.0);
        folders.push(d);
    }
    folders.sort_by(|a, b| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes()));
    let mut files = Vec::new();
    for folder in &folders {
        files.extend(images_in(folder, dropped)?);
    }
    Ok(files)
}

/// The image files directly inside `dir`, sorted by name; other files go to `dropped`.
fn images_in(dir: &Path, dropped: &mut Vec<(PathBuf, Dropped)>) -> Result<Vec<PathBuf>, DataError> {
    let (_, files) = entries(dir)?;
    let mut images = Vec::new();
    for file in files {
        let ext = file.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if EXTENSIONS.contains(&ext.as_str()) {
            images.push(file);
        } else if UNSUPPORTED.contains(&ext.as_str()) {
            let hint = "msnr decodes PNG and JPEG; convert the file (e.g. to PNG) first";
            return Err(DataError::invalid(&file, format!(".{ext} images are not supported: {hint}")));
        } else {
            dropped.push((file, Dropped::NotAnImage));
        }
    }
    Ok(images)
}

/// The visible sub-folders and files of `dir` (symlinks followed), each sorted by name.
fn entries(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let read = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in read {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if file_name(&path).starts_with('.') {
            continue;
        }
        if path.is_dir() {
            dirs.push(path);
        } else if path.is_file() {
            files.push(path);
        }
    }
    let by_name = |a: &PathBuf, b: &PathBuf| a.as_os_str().as_encoded_bytes().cmp(b.as_os_str().as_encoded_bytes());
    dirs.sort_by(by_name);
    files.sort_by(by_name);
    Ok((dirs, files))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    fn names(folder: &ImageFolder, root: &Path) -> Vec<(String, i64)> {
        let rel = |p: &PathBuf| p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        folder.files.iter().map(|(p, l)| (rel(p), *l)).collect()
    }

    #[test]
    fn labels_follow_sorted_class_folders_like_image_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["dog/b.png", "dog/a.JPG", "Cat/z.jpeg", "cat/x/y.png", "cat/w.png", "cat/readme.txt", "top.png"] {
            touch(root, f);
        }
        touch(root, "cat/.hidden.png");
        touch(root, ".git/HEAD.png");
        let folder = scan(root).unwrap();
        assert_eq!(folder.classes, vec!["Cat", "cat", "dog"]);
        let expected = [("Cat/z.jpeg", 0), ("cat/w.png", 1), ("cat/x/y.png", 1), ("dog/a.JPG", 2), ("dog/b.png", 2)];
        assert_eq!(names(&folder, root), expected.map(|(p, l)| (p.to_owned(), l)));
        let dropped: Vec<_> = folder.dropped.iter().map(|(p, why)| (p.strip_prefix(root).unwrap(), *why)).collect();
        let expected =
            [(Path::new("top.png"), Dropped::BesideClasses), (Path::new("cat/readme.txt"), Dropped::NotAnImage)];
        assert_eq!(dropped, expected);
        let warning = folder.dropped_warning(root).unwrap();
        let expected = format!(
            "warning: 2 file(s) under {} not imported: top.png (beside the class folders), cat/readme.txt (not PNG/JPEG)",
            root.display()
        );
        assert_eq!(warning, expected);
    }

    #[test]
    fn a_warning_names_the_first_few_dropped_files() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "a/x.png");
        for i in 0..7 {
            touch(dir.path(), &format!("{i}.png"));
        }
        let warning = scan(dir.path()).unwrap().dropped_warning(dir.path()).unwrap();
        assert!(warning.starts_with("warning: 7 file(s) under"), "{warning}");
        assert!(warning.contains("4.png (beside the class folders), ...") && !warning.contains("5.png"), "{warning}");
        touch(dir.path(), "a/y.png");
        fs::remove_dir_all(dir.path().join("a")).unwrap();
        assert_eq!(scan(dir.path()).unwrap().dropped_warning(dir.path()), None, "a flat folder imports them all");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loop_is_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "a/x.png");
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("a/again")).unwrap();
        let folder = scan(dir.path()).unwrap();
        assert_eq!(names(&folder, dir.path()), vec![("a/x.png".to_owned(), 0)]);
    }

    #[test]
    fn flat_folder_is_unlabelled() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "b.png");
        touch(dir.path(), "a.jpg");
        let folder = scan(dir.path()).unwrap();
        assert_eq!(folder.classes, vec![SINGLE_CLASS]);
        assert_eq!(names(&folder, dir.path()), vec![("a.jpg".to_owned(), 0), ("b.png".to_owned(), 0)]);
    }

    #[test]
    fn empty_class_and_unsupported_extension_are_named() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "a/x.png");
        touch(dir.path(), "b/notes.txt");
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("/b") && err.contains("no image files"), "{err}");
        touch(dir.path(), "b/scan.TIFF");
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("scan.TIFF") && err.contains(".tiff images are not supported"), "{err}");
    }
}
