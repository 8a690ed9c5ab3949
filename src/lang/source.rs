//! Source files and byte spans into them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a file in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub usize);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the range belongs to.
    pub source: SourceId,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset one past the last character.
    pub end: usize,
}

impl Span {
    /// The range as miette wants it.
    #[must_use]
    pub fn range(self) -> miette::SourceSpan {
        (self.start, self.end.saturating_sub(self.start)).into()
    }
}

/// One loaded file: its path, the name shown in diagnostics, and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Canonical path on disk (or a pseudo path such as `<stdlib>/train.msnr`).
    pub path: PathBuf,
    /// The name diagnostics print (relative to the working directory when possible).
    pub name: String,
    /// The whole text.
    pub text: Arc<String>,
}

/// Every file a pipeline was loaded from: the main file, its imports, the stdlib.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Adds a file and returns its id.
    pub fn add(&mut self, path: PathBuf, name: String, text: String) -> SourceId {
        self.files.push(SourceFile { path, name, text: Arc::new(text) });
        SourceId(self.files.len() - 1)
    }

    /// The file behind an id.
    #[must_use]
    pub fn get(&self, id: SourceId) -> &SourceFile {
        &self.files[id.0]
    }

    /// The id of an already loaded path, if any.
    #[must_use]
    pub fn find(&self, path: &Path) -> Option<SourceId> {
        self.files.iter().position(|f| f.path == path).map(SourceId)
    }

    /// The file as a miette source, named for display.
    #[must_use]
    pub fn named(&self, id: SourceId) -> miette::NamedSource<Arc<String>> {
        let file = self.get(id);
        miette::NamedSource::new(file.name.clone(), Arc::clone(&file.text))
    }
}
