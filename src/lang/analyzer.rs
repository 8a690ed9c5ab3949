//! The analyzer: collects the declarations of every loaded file, applies
//! `--set` overrides, expands sweeps, and checks each stage against its kind's
//! signature, producing the resolved [`Pipeline`]. All errors of the pass are
//! collected and reported together, sorted by position.

use std::collections::{BTreeMap, HashMap};

use super::ast::{Ident, Item, StageDecl};
use super::codes;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::eval::Scope;
use super::loader::Loaded;
use super::overrides::Override;
use super::pipeline::{Pipeline, Stage, SweepInstance};
use super::source::{Sources, Span};
use super::stdlib::Stdlib;
use super::suggest;
use super::sweep;
use super::types::Type;
use super::value::Value;
use super::world::{ParamEntry, StageEntry, SweepEntry, World};

/// The state of one analysis pass.
pub struct Analyzer<'a> {
    /// Kinds and families.
    pub(super) stdlib: &'a Stdlib,
    /// Every loaded file.
    pub(super) sources: &'a Sources,
    /// The declarations.
    pub(super) world: World<'a>,
    /// Errors so far.
    pub(super) errors: Vec<Diagnostic>,
    /// Stage references of the stage being checked.
    pub(super) refs: Vec<(String, Span)>,
    /// Params being substituted (to catch a param that refers to itself).
    pub(super) active: Vec<String>,
    /// The first typed value each param took.
    pub(super) param_values: BTreeMap<String, Value>,
    /// The first typed value each sweep binding took: (sweep, instance, variable).
    pub(super) binding_values: HashMap<(usize, usize, String), Value>,
}

/// Checks the loaded files and builds the pipeline.
///
/// # Errors
/// Every error found, sorted by file and position.
pub fn analyze(loaded: &Loaded, overrides: &[Override], stdlib: &Stdlib) -> Result<Pipeline, Diagnostics> {
    let mut a = Analyzer::new(stdlib, &loaded.sources);
    a.world.visible = loaded.visibility();
    a.world.bases.clone_from(&loaded.bases);
    a.world.cwd.clone_from(&loaded.cwd);
    a.declare(loaded);
    a.apply_overrides(overrides);
    sweep::expand(&mut a);
    let stages = a.stages(loaded);
    let params = a.pipeline_params();
    let errors = a.into_errors();
    if errors.is_empty() {
        Ok(Pipeline { path: loaded.main.clone(), sources: loaded.sources.clone(), stages, params })
    } else {
        Err(Diagnostics(errors))
    }
}

impl<'a> Analyzer<'a> {
    fn new(stdlib: &'a Stdlib, sources: &'a Sources) -> Self {
        Self {
            stdlib,
            sources,
            world: World::default(),
            errors: Vec::new(),
            refs: Vec::new(),
            active: Vec::new(),
            param_values: BTreeMap::new(),
            binding_values: HashMap::new(),
        }
    }

    /// An analyzer with no declarations, for evaluating stdlib defaults.
    pub(super) fn for_stdlib(stdlib: &'a Stdlib, sources: &'a Sources) -> Self {
        Self::new(stdlib, sources)
    }

    /// Evaluates a declared default against its type (no names in scope).
    pub(super) fn eval_default(&mut self, expr: &super::ast::Expr, ty: &Type) -> Option<Value> {
        let scope = Scope { file: expr.span.source, sweep: None, origin: None, depth: 0 };
        self.eval(expr, ty, scope)
    }

    /// The errors, sorted by position, exact repeats dropped (a param's error
    /// shows once however many stages use it).
    pub(super) fn into_errors(self) -> Vec<Diagnostic> {
        let mut errors = self.errors;
        let key = |d: &Diagnostic| (d.source.name().to_string(), d.labels.first().map_or(0, |l| l.offset()));
        errors.sort_by_key(key);
        let mut seen = Vec::new();
        errors.retain(|d| {
            let id = (d.code, d.message.clone(), key(d));
            let fresh = !seen.contains(&id);
            seen.push(id);
            fresh
        });
        errors
    }

    /// Adds an error.
    pub(super) fn push(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn declare(&mut self, loaded: &'a Loaded) {
        for (id, file) in &loaded.files {
            for item in &file.items {
                match item {
                    Item::Param(p) => {
                        if let Some(prev) = self.world.params.get(&p.name.name) {
                            let first = prev.decl.name.span;
                            self.duplicate("param", &p.name, first);
                        }
                        self.world.params.insert(p.name.name.clone(), ParamEntry { decl: p, value: &p.value });
                    }
                    Item::Stage(s) => self.declare_stage(s, None),
                    Item::Sweep(s) => {
                        let index = self.world.sweeps.len();
                        self.world.sweeps.push(SweepEntry { decl: s, instances: Vec::new() });
                        s.stages.iter().for_each(|st| self.declare_stage(st, Some(index)));
                    }
                    Item::Type(t) if !loaded.is_std(*id) => self.outside_stdlib("type", &t.name),
                    Item::Kind(k) if !loaded.is_std(*id) => self.outside_stdlib("kind", &k.name),
                    _ => {}
                }
            }
        }
    }

    fn declare_stage(&mut self, decl: &'a StageDecl, sweep: Option<usize>) {
        if let Some(prev) = self.world.stages.get(&decl.name.name) {
            let first = prev.decl.name.span;
            self.duplicate("stage", &decl.name, first);
            return;
        }
        self.world.stages.insert(decl.name.name.clone(), StageEntry { decl, sweep });
    }

    /// A second declaration of `name`; labels both when they share a file.
    pub(super) fn duplicate(&mut self, what: &str, name: &Ident, first: Span) {
        let msg = format!("{what} `{}` is declared more than once", name.name);
        let mut d = Diagnostic::new(self.sources, codes::DUPLICATE, msg, name.span, "declared again here");
        if first.source == name.span.source {
            d = d.with_label(first, "first declared here");
        } else {
            let file = &self.sources.get(first.source).name;
            d = d.with_help(format!("the first declaration is in {file}; rename one of them"));
        }
        self.push(d);
    }

    fn outside_stdlib(&mut self, what: &str, name: &Ident) {
        let msg = format!("`{what}` declarations belong in the standard library");
        let d = Diagnostic::new(self.sources, codes::DECLARATION_OUTSIDE_STDLIB, msg, name.span, "declared here")
            .with_help("pipelines use the stage kinds and types of `stdlib/`; see `msnr doc`");
        self.push(d);
    }

    fn apply_overrides(&mut self, overrides: &'a [Override]) {
        for o in overrides {
            if let Some(entry) = self.world.params.get_mut(&o.name) {
                entry.value = &o.value;
                continue;
            }
            let names: Vec<&str> = self.world.params.keys().map(String::as_str).collect();
            let help = suggest::help(&o.name, "the params are", &names).unwrap_or_else(|| "this pipeline declares no params".into());
            let msg = format!("`--set {}`: no param `{}` in this pipeline", o.name, o.name);
            let d = Diagnostic::new(self.sources, codes::BAD_OVERRIDE, msg, o.name_span, "unknown param").with_help(help);
            self.push(d);
        }
    }

    /// Every stage instance, in file order (imports first), sweeps expanded in place.
    fn stages(&mut self, loaded: &'a Loaded) -> Vec<Stage> {
        let mut out = Vec::new();
        let mut sweep_index = 0;
        for (id, file) in &loaded.files {
            for item in &file.items {
                match item {
                    Item::Stage(s) => {
                        let scope = Scope { file: *id, sweep: None, origin: None, depth: 0 };
                        out.extend(self.stage(s, scope, s.name.name.clone(), None));
                    }
                    Item::Sweep(_) => {
                        out.extend(self.sweep_stages(sweep_index));
                        sweep_index += 1;
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn sweep_stages(&mut self, s: usize) -> Vec<Stage> {
        let entry = &self.world.sweeps[s];
        let decl = entry.decl;
        let suffixes: Vec<String> = entry.instances.iter().map(|i| i.suffix.clone()).collect();
        let mut out = Vec::new();
        for (i, suffix) in suffixes.iter().enumerate() {
            let scope = Scope { file: decl.span.source, sweep: Some((s, i)), origin: None, depth: 0 };
            for st in &decl.stages {
                let name = format!("{}{suffix}", st.name.name);
                let stage = self.stage(st, scope, name, Some(st.name.name.clone()));
                out.extend(stage.map(|mut stage| {
                    stage.sweep.as_mut().expect("a swept stage").bindings = self.bindings(s, i);
                    stage
                }));
            }
        }
        out
    }

    /// The values of instance `i` of sweep `s`: typed where a stage used them.
    fn bindings(&self, s: usize, i: usize) -> Vec<(String, Value)> {
        let instance = &self.world.sweeps[s].instances[i];
        let file = self.world.sweeps[s].decl.span.source;
        let scope = Scope { file, sweep: None, origin: None, depth: 0 };
        (instance.bindings.iter())
            .map(|b| {
                let typed = self.binding_values.get(&(s, i, b.name.clone())).cloned();
                (b.name.clone(), typed.unwrap_or_else(|| self.untyped(b.expr, scope)))
            })
            .collect()
    }

    fn stage(&mut self, decl: &StageDecl, scope: Scope, name: String, base: Option<String>) -> Option<Stage> {
        let Some(kind) = self.stdlib.kind(&decl.kind.name) else {
            let kinds: Vec<&str> = self.stdlib.kinds.iter().map(|k| k.name.as_str()).collect();
            let msg = format!("unknown stage kind `{}`", decl.kind.name);
            let mut d = Diagnostic::new(self.sources, codes::UNKNOWN_KIND, msg, decl.kind.span, "not a stage kind");
            if let Some(help) = suggest::help(&decl.kind.name, "the stage kinds are", &kinds) {
                d = d.with_help(help);
            }
            self.push(d);
            return None;
        };
        self.refs.clear();
        let owner = format!("stage kind `{}`", kind.name);
        let params = self.args(&kind.params, &decl.body, scope, &owner, decl.kind.span)?;
        let sweep = base.map(|base| SweepInstance { base, bindings: Vec::new() });
        let refs = std::mem::take(&mut self.refs);
        let param_spans = decl.body.fields.iter().map(|f| (f.name.name.clone(), f.value.span)).collect();
        Some(Stage { name, kind: kind.name.clone(), params, refs, span: decl.name.span, param_spans, sweep })
    }

    /// Each param's value: typed as its first use saw it, else as written.
    fn pipeline_params(&self) -> BTreeMap<String, Value> {
        (self.world.params.iter())
            .map(|(name, entry)| {
                let scope = Scope { file: entry.value.span.source, sweep: None, origin: None, depth: 0 };
                let value = self.param_values.get(name).cloned().unwrap_or_else(|| self.untyped(entry.value, scope));
                (name.clone(), value)
            })
            .collect()
    }
}
