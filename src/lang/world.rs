//! Every declaration of a loaded pipeline by name: params (with their
//! `--set` values), stages, sweeps and their expanded instances, and which
//! files see which (a file sees itself and what it imports, transitively).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::ast::{Expr, ParamDecl, StageDecl, SweepDecl};
use super::source::SourceId;

/// The declarations the analyzer resolves names against.
#[derive(Default)]
pub struct World<'a> {
    /// Params by name.
    pub params: BTreeMap<String, ParamEntry<'a>>,
    /// Stages by their written (base) name.
    pub stages: BTreeMap<String, StageEntry<'a>>,
    /// Sweeps in declaration order.
    pub sweeps: Vec<SweepEntry<'a>>,
    /// For each loaded file, the files whose declarations it sees.
    pub visible: HashMap<SourceId, HashSet<SourceId>>,
    /// The folder relative paths in each file are resolved against.
    pub bases: HashMap<SourceId, PathBuf>,
    /// The folder for files not in `bases` (`--set` values).
    pub cwd: PathBuf,
}

/// One `param`.
pub struct ParamEntry<'a> {
    /// Its declaration.
    pub decl: &'a ParamDecl,
    /// Its value: the declared one or the `--set` override.
    pub value: &'a Expr,
}

/// One written `stage`.
pub struct StageEntry<'a> {
    /// Its declaration.
    pub decl: &'a StageDecl,
    /// The index of its sweep in [`World::sweeps`], if it is swept.
    pub sweep: Option<usize>,
}

/// One `sweep` and its instances.
pub struct SweepEntry<'a> {
    /// Its declaration.
    pub decl: &'a SweepDecl,
    /// One per combination of values, the first variable varying slowest.
    pub instances: Vec<Instance<'a>>,
}

/// One combination of sweep values.
pub struct Instance<'a> {
    /// Each variable's value expression and its compact rendering.
    pub bindings: Vec<Binding<'a>>,
    /// `[g=5,w=constant]`, appended to the base names.
    pub suffix: String,
}

/// One variable's value in an instance.
pub struct Binding<'a> {
    /// The variable.
    pub name: String,
    /// Its value as written in the sweep's list.
    pub expr: &'a Expr,
}

impl World<'_> {
    /// True when declarations of file `decl` are visible from file `from`
    /// (files outside the import tree, such as `--set` values, see everything).
    #[must_use]
    pub fn sees(&self, from: SourceId, decl: SourceId) -> bool {
        self.visible.get(&from).is_none_or(|v| v.contains(&decl))
    }

    /// The folder relative paths written in `file` are resolved against.
    #[must_use]
    pub fn base(&self, file: SourceId) -> &PathBuf {
        self.bases.get(&file).unwrap_or(&self.cwd)
    }

    /// The instance names of swept stage `base` (`m[g=1]`, ...).
    #[must_use]
    pub fn instance_names(&self, base: &str) -> Vec<String> {
        let Some(StageEntry { sweep: Some(s), .. }) = self.stages.get(base) else { return Vec::new() };
        self.sweeps[*s].instances.iter().map(|i| format!("{base}{}", i.suffix)).collect()
    }
}
