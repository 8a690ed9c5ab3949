//! The analyzer: collects the declarations of every loaded file, applies
//! `--set` overrides, expands sweeps, and checks each stage against its kind's
//! signature, producing the resolved [`Pipeline`]. All errors of the pass are
//! collected and reported together, sorted by position.

use std::collections::{BTreeMap, HashMap, HashSet};

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
        let key =
            |d: &Diagnostic| (d.source.name().to_string(), d.labels.first().map_or(0, miette::LabeledSpan::offset));
        errors.sort_by_key(key);
        let mut seen = HashSet::new();
        errors.retain(|d| seen.insert((d.code, d.message.clone(), key(d))));
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
                        } else if let Some(stage) = self.world.stages.get(&p.name.name) {
                            let first = stage.decl.name.span;
                            self.duplicate("the name", &p.name, first);
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
        if let Some(param) = self.world.params.get(&decl.name.name) {
            let first = param.decl.name.span;
            self.duplicate("the name", &decl.name, first);
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
            let help = suggest::help(&o.name, "the params are", &names)
                .unwrap_or_else(|| "this pipeline declares no params".into());
            let msg = format!("`--set {}`: no param `{}` in this pipeline", o.name, o.name);
            let d =
                Diagnostic::new(self.sources, codes::BAD_OVERRIDE, msg, o.name_span, "unknown param").with_help(help);
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
        sweep::check_distinct(self, s, &out);
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

#[cfg(test)]
mod tests {
    use super::super::{load_str, Pipeline};
    use super::*;

    fn load(text: &str, overrides: &[(&str, &str)]) -> Pipeline {
        let o: Vec<(String, String)> = overrides.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        load_str("test.msnr", text, &o).unwrap_or_else(|d| panic!("{}", d.render_plain()))
    }

    fn codes_of(text: &str, overrides: &[(&str, &str)]) -> Vec<&'static str> {
        let o: Vec<(String, String)> = overrides.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        load_str("test.msnr", text, &o).expect_err("should fail").0.iter().map(|d| d.code).collect()
    }

    const BASE: &str = "stage d = mnist {}\n";

    fn train(extra: &str) -> String {
        format!("{BASE}stage m = train {{ data = d, net = unet {{}}, steps = 10 {extra} }}")
    }

    #[test]
    fn ints_widen_to_floats() {
        let a = load(&train(", weighting = min_snr { gamma = 5 }, ema = 1"), &[]);
        let b = load(&train(", weighting = min_snr { gamma = 5.0 }, ema = 1.0"), &[]);
        assert_eq!(a.stages[1].params, b.stages[1].params);
        assert_eq!(a.stages[1].params["ema"], Value::Float(1.0));
    }

    #[test]
    fn defaults_are_filled() {
        let p = load(&train(""), &[]);
        let m = &p.stages[1].params;
        assert_eq!(m["target"], Value::Ctor { name: "eps".into(), args: BTreeMap::new() });
        assert_eq!(m["batch"], Value::Int(128));
        let Value::Ctor { args, .. } = &m["net"] else { panic!() };
        assert_eq!(args["mults"], Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(2), Value::Int(2)]));
        assert_eq!(p.stages[0].params["count"], Value::Int(5000));
    }

    #[test]
    fn sweeps_expand_with_names_and_bindings() {
        let text = format!(
            "{BASE}sweep g in [1, 5], t in [eps, v] {{\n stage m = train {{ data = d, net = unet {{}}, steps = 10, target = t, weighting = min_snr {{ gamma = g }} }}\n stage s = sample {{ model = m, count = 4 }}\n}}"
        );
        let p = load(&text, &[]);
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "d",
                "m[g=1,t=eps]",
                "s[g=1,t=eps]",
                "m[g=1,t=v]",
                "s[g=1,t=v]",
                "m[g=5,t=eps]",
                "s[g=5,t=eps]",
                "m[g=5,t=v]",
                "s[g=5,t=v]"
            ]
        );
        let s = p.stage("s[g=5,t=v]").unwrap();
        assert_eq!(s.inputs(), ["m[g=5,t=v]"]);
        let sweep = s.sweep.as_ref().unwrap();
        assert_eq!(sweep.base, "s");
        let m = p.stage("m[g=5,t=v]").unwrap();
        assert_eq!(m.sweep.as_ref().unwrap().bindings[0], ("g".to_string(), Value::Float(5.0)));
    }

    #[test]
    fn overrides_replace_params_and_rename_instances() {
        let text = format!("param gamma = 5\n{BASE}sweep w in [constant, min_snr {{ gamma = gamma }}] {{ stage m = train {{ data = d, net = unet {{}}, steps = 10, weighting = w }} }}");
        let p = load(&text, &[("gamma", "10")]);
        assert_eq!(p.params["gamma"], Value::Float(10.0));
        assert!(
            p.stage("m[w=min_snr{gamma=10}]").is_some(),
            "{:?}",
            p.stages.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        let p = load(&text, &[("gamma", "5"), ("gamma", "2.5")]);
        assert!(p.stage("m[w=min_snr{gamma=2.5}]").is_some());
        assert_eq!(codes_of(&text, &[("gama", "1")]), [codes::BAD_OVERRIDE]);
        assert_eq!(codes_of(&text, &[("gamma", "[")]), [codes::BAD_OVERRIDE]);
        assert_eq!(codes_of(&text, &[("gamma", "\"x\"")]), [codes::TYPE_MISMATCH]);
    }

    #[test]
    fn overrides_take_constructors_and_lists() {
        let text = format!("param w = constant\nparam gs = [1]\n{BASE}sweep g in gs {{ stage m = train {{ data = d, net = unet {{}}, steps = 10, weighting = w, seed = g }} }}");
        let p = load(&text, &[("w", "soft_min_snr { gamma = 3 }"), ("gs", "[1, 2, 3]")]);
        assert_eq!(p.stages.len(), 4);
        let Value::Ctor { name, args } = &p.stages[1].params["weighting"] else { panic!() };
        assert_eq!((name.as_str(), &args["gamma"]), ("soft_min_snr", &Value::Float(3.0)));
    }

    #[test]
    fn paths_resolve_against_the_file() {
        let cwd = std::env::current_dir().unwrap();
        let p = load("stage a = images { path = \"data/../imgs/./x\" }\nstage b = images { path = \"/abs/p\" }", &[]);
        assert_eq!(p.stages[0].params["path"], Value::Path(cwd.join("imgs/x")));
        assert_eq!(p.stages[1].params["path"], Value::Path("/abs/p".into()));
    }

    #[test]
    fn references_are_edges_with_spans() {
        let text = format!("param src = d\n{BASE}stage c = crop {{ images = src, size = 8 }}\nstage f = fid {{ samples = c, reference = d }}");
        let p = load(&text, &[]);
        let f = p.stage("f").unwrap();
        assert_eq!(f.inputs(), ["c", "d"]);
        let text_of = |span: Span| &p.sources.get(span.source).text[span.start..span.end];
        assert_eq!(text_of(f.refs[0].1), "c");
        let c = p.stage("c").unwrap();
        assert_eq!((c.refs[0].0.as_str(), text_of(c.refs[0].1)), ("d", "src"));
        assert_eq!(text_of(c.span), "c");
    }

    #[test]
    fn unions_and_optionals() {
        let p = load(&format!("{BASE}stage a = crop {{ images = \"x\", size = 8 }}\nstage b = crop {{ images = d, size = 8 }}\nstage f = fid {{ samples = b, reference = d, inception = none }}"), &[]);
        assert!(matches!(p.stages[1].params["images"], Value::Path(_)));
        assert_eq!(p.stages[2].params["images"], Value::Stage("d".into()));
        assert_eq!(p.stages[3].params["inception"], Value::None);
    }

    #[test]
    fn named_instances_from_outside_the_sweep() {
        let text = format!("{BASE}sweep g in [1, 5] {{ stage m = train {{ data = d, net = unet {{}}, steps = 10, weighting = min_snr {{ gamma = g }} }} }}\nstage s = sample {{ model = m[g=5], count = 1 }}");
        let p = load(&text, &[]);
        assert_eq!(p.stage("s").unwrap().inputs(), ["m[g=5]"]);
        assert_eq!(codes_of(&text.replace("m[g=5]", "m"), &[]), [codes::SWEPT_REFERENCE]);
    }

    #[test]
    fn stdlib_helpers_load_first() {
        let p = load("use \"std/celeba.msnr\"\nstage c = crop { images = celeba64, size = 32 }", &[]);
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["celeba_raw", "celeba64", "c"]);
    }

    #[test]
    fn errors_are_collected() {
        let codes = codes_of("stage a = mnist { count = \"x\" }\nstage b = nope {}\nstage c = crop { images = zz, size = 1, q = 1 }\nstage a = mnist {}", &[]);
        assert_eq!(
            codes,
            [codes::TYPE_MISMATCH, codes::UNKNOWN_KIND, codes::UNDEFINED, codes::UNKNOWN_PARAMETER, codes::DUPLICATE]
        );
    }

    #[test]
    fn a_param_and_a_stage_may_not_share_a_name() {
        assert_eq!(codes_of("param d = 1\nstage d = mnist {}", &[]), [codes::DUPLICATE]);
        assert_eq!(codes_of("stage d = mnist {}\nparam d = 1", &[]), [codes::DUPLICATE]);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        assert_eq!(load("\u{feff}stage d = mnist {}", &[]).stages.len(), 1);
    }

    /// Regression: a stage of an unknown kind, used where a union is expected,
    /// also reported a type mismatch on top of the unknown kind.
    #[test]
    fn regression_unknown_kind_reported_once_in_a_union() {
        let codes =
            codes_of(&format!("{BASE}stage i = sampel {{}}\nstage f = fid {{ samples = i, reference = d }}"), &[]);
        assert_eq!(codes, [codes::UNKNOWN_KIND]);
    }

    #[test]
    fn params_referring_to_themselves_are_caught() {
        assert_eq!(codes_of("param a = a\nstage d = mnist { count = a }", &[]), [codes::PARAM_CYCLE]);
    }
}
