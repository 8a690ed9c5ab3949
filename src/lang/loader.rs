//! Loading a pipeline's files: the main file and everything it `use`s,
//! transitively. Relative imports resolve against the importing file;
//! `std/...` names an embedded stdlib file. Each file is read and parsed
//! once; an import cycle is an error at the `use` that closes it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::ast::{File, Item, UseDecl};
use super::codes;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::parser;
use super::source::{SourceId, Sources, Span};
use super::stdlib;

/// The parsed files of one pipeline.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every file read.
    pub sources: Sources,
    /// Parsed files, each after the files it imports (the main file last).
    pub files: Vec<(SourceId, File)>,
    /// The files each file imports directly.
    pub imports: HashMap<SourceId, Vec<SourceId>>,
    /// The folder each file's relative paths resolve against.
    pub bases: HashMap<SourceId, PathBuf>,
    /// Files from the embedded stdlib.
    pub std_files: HashSet<SourceId>,
    /// The main file's path.
    pub main: PathBuf,
    /// The working directory (relative paths outside any file resolve here).
    pub cwd: PathBuf,
}

impl Loaded {
    /// True for an embedded stdlib file.
    #[must_use]
    pub fn is_std(&self, id: SourceId) -> bool {
        self.std_files.contains(&id)
    }

    /// For each file, itself and every file it imports, transitively.
    #[must_use]
    pub fn visibility(&self) -> HashMap<SourceId, HashSet<SourceId>> {
        let mut out = HashMap::new();
        for (id, _) in &self.files {
            let mut seen = HashSet::from([*id]);
            let mut todo = vec![*id];
            while let Some(f) = todo.pop() {
                for next in self.imports.get(&f).into_iter().flatten() {
                    if seen.insert(*next) {
                        todo.push(*next);
                    }
                }
            }
            out.insert(*id, seen);
        }
        out
    }
}

/// Loads the file at `path` and its imports.
///
/// # Errors
/// An unreadable main file, and every syntax or import error of any file.
pub fn load_file(path: &Path) -> Result<Loaded, Diagnostics> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolute = cwd.join(path);
    let mut loader = Loader::new(cwd.clone());
    match std::fs::canonicalize(&absolute).and_then(|p| std::fs::read_to_string(&p).map(|t| (p, t))) {
        Ok((canonical, text)) => loader.root(canonical, text),
        Err(e) => {
            let id = loader.loaded.sources.add(absolute.clone(), path.display().to_string(), String::new());
            let span = Span { source: id, start: 0, end: 0 };
            let (why, help) = unreadable(&absolute, &e);
            let msg = format!("cannot read {}: {why}", path.display());
            let d = Diagnostic::new(&loader.loaded.sources, codes::UNREADABLE_PIPELINE, msg, span, "here");
            return Err(Diagnostics(vec![d.with_help(help)]));
        }
    }
    loader.finish()
}

/// Why the pipeline file at `path` could not be read, and what to do about it.
fn unreadable(path: &Path, e: &std::io::Error) -> (String, String) {
    if path.is_dir() {
        return ("it is a folder".into(), "give the path of a `.msnr` file".into());
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            ("no such file".into(), "check the path; it is relative to the current folder".into())
        }
        std::io::ErrorKind::InvalidData => (
            "it is not UTF-8 text".into(),
            "pipeline files are UTF-8 text; save it as UTF-8 (a byte order mark is fine)".into(),
        ),
        _ => (e.to_string(), "check that the file exists and is readable".into()),
    }
}

/// Loads `text` as a file named `name` in the working directory.
///
/// # Errors
/// Every syntax or import error of the text and its imports.
pub fn load_text(name: &str, text: &str) -> Result<Loaded, Diagnostics> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut loader = Loader::new(cwd.clone());
    loader.root(cwd.join(name), text.to_string());
    loader.finish()
}

/// The walk over the import tree.
struct Loader {
    loaded: Loaded,
    errors: Vec<Diagnostic>,
    stack: Vec<SourceId>,
}

impl Loader {
    fn new(cwd: PathBuf) -> Self {
        Self { loaded: Loaded { cwd, ..Loaded::default() }, errors: Vec::new(), stack: Vec::new() }
    }

    fn root(&mut self, path: PathBuf, text: String) {
        let name = display_name(&path, &self.loaded.cwd);
        let base = path.parent().map_or_else(|| self.loaded.cwd.clone(), Path::to_path_buf);
        self.loaded.main.clone_from(&path);
        let id = self.loaded.sources.add(path, name, without_bom(text));
        self.loaded.bases.insert(id, base);
        self.visit(id);
    }

    fn finish(self) -> Result<Loaded, Diagnostics> {
        if self.errors.is_empty() {
            Ok(self.loaded)
        } else {
            Err(Diagnostics(self.errors))
        }
    }

    /// Parses file `id`, loads its imports, then records it (post-order).
    fn visit(&mut self, id: SourceId) {
        self.stack.push(id);
        match parser::parse_file(&self.loaded.sources, id) {
            Ok(file) => {
                let uses: Vec<UseDecl> = (file.items.iter())
                    .filter_map(|i| if let Item::Use(u) = i { Some(u.clone()) } else { None })
                    .collect();
                for u in &uses {
                    self.import(id, u);
                }
                self.loaded.files.push((id, file));
            }
            Err(d) => self.errors.extend(d.0),
        }
        self.stack.pop();
    }

    fn import(&mut self, from: SourceId, u: &UseDecl) {
        let Some((key, name, base, std)) = self.resolve(from, u) else { return };
        if let Some(existing) = self.loaded.sources.find(&key) {
            if let Some(pos) = self.stack.iter().position(|s| *s == existing) {
                self.cycle(pos, u);
            } else {
                self.loaded.imports.entry(from).or_default().push(existing);
            }
            return;
        }
        let text = match std {
            Some(text) => Ok(text.to_string()),
            None => std::fs::read_to_string(&key),
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => return self.not_found(u, &format!("cannot read {}: {e}", key.display())),
        };
        let id = self.loaded.sources.add(key, name, without_bom(text));
        self.loaded.bases.insert(id, base);
        if std.is_some() {
            self.loaded.std_files.insert(id);
        }
        self.loaded.imports.entry(from).or_default().push(id);
        self.visit(id);
    }

    /// The imported file's key path, display name, base folder, and embedded text if from the stdlib.
    fn resolve(&mut self, from: SourceId, u: &UseDecl) -> Option<(PathBuf, String, PathBuf, Option<&'static str>)> {
        if let Some(name) = u.path.strip_prefix("std/") {
            let Some(text) = stdlib::file(name) else {
                let names: Vec<String> = stdlib::FILES.iter().map(|(n, _)| format!("`std/{n}`")).collect();
                self.not_found(u, &format!("no stdlib file `{}`; the stdlib has {}", u.path, names.join(", ")));
                return None;
            };
            return Some((
                PathBuf::from(format!("<stdlib>/{name}")),
                u.path.clone(),
                self.loaded.cwd.clone(),
                Some(text),
            ));
        }
        let base = self.loaded.bases.get(&from).cloned().unwrap_or_else(|| self.loaded.cwd.clone());
        let joined = base.join(&u.path);
        match std::fs::canonicalize(&joined) {
            Ok(p) if p.is_file() => {
                let parent = p.parent().map_or_else(|| base.clone(), Path::to_path_buf);
                Some((p.clone(), display_name(&p, &self.loaded.cwd), parent, None))
            }
            Ok(p) => {
                self.not_found(u, &format!("{} is not a file", p.display()));
                None
            }
            Err(e) => {
                let cwd = std::env::current_dir().unwrap_or_default();
                let shown = joined.strip_prefix(&cwd).unwrap_or(&joined);
                self.not_found(u, &format!("cannot open {}: {e}", shown.display()));
                None
            }
        }
    }

    fn not_found(&mut self, u: &UseDecl, detail: &str) {
        let msg = format!("import `{}` not found", u.path);
        let d = Diagnostic::new(&self.loaded.sources, codes::IMPORT_NOT_FOUND, msg, u.path_span, "imported here")
            .with_help(detail.to_string());
        self.errors.push(d);
    }

    fn cycle(&mut self, pos: usize, u: &UseDecl) {
        let names: Vec<&str> = self.stack[pos..].iter().map(|id| self.loaded.sources.get(*id).name.as_str()).collect();
        let chain = format!("{} -> {}", names.join(" -> "), names[0]);
        let d = Diagnostic::new(
            &self.loaded.sources,
            codes::IMPORT_CYCLE,
            format!("import cycle: {chain}"),
            u.path_span,
            "this import closes the cycle",
        )
        .with_help("files may not import each other; move the shared declarations into a third file");
        self.errors.push(d);
    }
}

/// The text without a leading UTF-8 byte order mark (some editors write one).
fn without_bom(text: String) -> String {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// `path` relative to `cwd` when it lies below it, else as it is.
fn display_name(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}
