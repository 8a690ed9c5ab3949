//! Sweep expansion: each `sweep a in [..], b in [..]` becomes one instance
//! per combination of values (the first variable varies slowest), named by
//! appending the compactly rendered bindings: `model[a=5,b=min_snr{gamma=5}]`.
//! Once resolved, instances of one stage must differ in some parameter.

use super::analyzer::Analyzer;
use super::ast::{Expr, ExprKind};
use super::codes;
use super::diagnostic::Diagnostic;
use super::pipeline::Stage;
use super::source::SourceId;
use super::world::{Binding, Instance, World};

/// How many params a sweep domain may go through before it must be a list.
const MAX_HOPS: usize = 16;

/// Expands every sweep of the analyzer's world into its instances.
pub fn expand(a: &mut Analyzer<'_>) {
    for s in 0..a.world.sweeps.len() {
        let decl = a.world.sweeps[s].decl;
        let mut domains = Vec::new();
        for (k, var) in decl.vars.iter().enumerate() {
            if let Some(prev) = decl.vars[..k].iter().find(|v| v.name.name == var.name.name) {
                a.duplicate("sweep variable", &var.name, prev.name.span);
            } else if let Some(values) = domain(a, &var.domain, decl.span.source, &var.name.name) {
                domains.push((var.name.name.clone(), values));
            }
        }
        if domains.len() == decl.vars.len() {
            let instances = combinations(&domains, &params_of(&a.world, decl.span.source));
            if check_unique(a, s, &instances) {
                a.world.sweeps[s].instances = instances;
            }
        }
    }
}

/// The values of one variable: a list literal, or a param holding one.
fn domain<'a>(a: &mut Analyzer<'a>, expr: &'a Expr, file: SourceId, var: &str) -> Option<Vec<&'a Expr>> {
    let mut current = expr;
    for _ in 0..MAX_HOPS {
        match &current.kind {
            ExprKind::List(items) if items.is_empty() => {
                let d = Diagnostic::new(
                    a.sources,
                    codes::BAD_SWEEP,
                    format!("sweep variable `{var}` has no values"),
                    current.span,
                    "empty list",
                )
                .with_help("a sweep needs at least one value per variable");
                a.push(d);
                return None;
            }
            ExprKind::List(items) => return Some(items.iter().collect()),
            ExprKind::Ident(n) => match a.world.params.get(n) {
                Some(p) if a.world.sees(file, p.decl.span.source) => current = p.value,
                _ => break,
            },
            _ => break,
        }
    }
    let msg = format!("sweep variable `{var}` must range over a list");
    let d = Diagnostic::new(a.sources, codes::BAD_SWEEP, msg, expr.span, "not a list")
        .with_help("write `name in [a, b, c]` or name a param holding a list");
    a.push(d);
    None
}

/// The cartesian product of the domains, first variable outermost.
fn combinations<'a, 'e>(
    domains: &[(String, Vec<&'a Expr>)],
    params: &dyn Fn(&str) -> Option<&'e Expr>,
) -> Vec<Instance<'a>> {
    let mut combos: Vec<Vec<Binding<'a>>> = vec![Vec::new()];
    for (name, values) in domains {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |e| {
                    let mut next: Vec<Binding<'a>> =
                        prefix.iter().map(|b| Binding { name: b.name.clone(), expr: b.expr }).collect();
                    next.push(Binding { name: name.clone(), expr: e });
                    next
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .map(|bindings| {
            let parts: Vec<String> =
                bindings.iter().map(|b| format!("{}={}", b.name, render(b.expr, params))).collect();
            Instance { suffix: format!("[{}]", parts.join(",")), bindings }
        })
        .collect()
}

/// Two values that render alike would give two instances one name.
fn check_unique(a: &mut Analyzer<'_>, s: usize, instances: &[Instance<'_>]) -> bool {
    for (i, inst) in instances.iter().enumerate() {
        if instances[..i].iter().any(|o| o.suffix == inst.suffix) {
            let decl = a.world.sweeps[s].decl;
            let msg = format!("sweep instances repeat: two combinations are both named `{}`", inst.suffix);
            let span = inst.bindings.last().map_or(decl.span, |b| b.expr.span);
            let d = Diagnostic::new(a.sources, codes::BAD_SWEEP, msg, span, "repeated value")
                .with_help("remove the repeated value");
            a.push(d);
            return false;
        }
    }
    true
}

/// Rejects two instances of one swept stage whose resolved parameters are equal (defaults
/// filled, ints widened: `min_snr {}`, `min_snr { gamma = 5 }` and `min_snr { gamma = 5.0 }`
/// are one value). They would have one cache key, and run at once into one work folder.
/// `stages` are the instances of sweep `s`, each named base + instance suffix.
pub fn check_distinct(a: &mut Analyzer<'_>, s: usize, stages: &[Stage]) {
    let instance = |stage: &Stage| {
        let base = stage.sweep.as_ref().map_or("", |sw| sw.base.as_str());
        a.world.sweeps[s].instances.iter().position(|i| stage.name.strip_prefix(base) == Some(i.suffix.as_str()))
    };
    let mut found = Vec::new();
    for (k, stage) in stages.iter().enumerate() {
        let same = |o: &&Stage| o.sweep.as_ref().map(|w| &w.base) == stage.sweep.as_ref().map(|w| &w.base);
        if let Some(first) = stages[..k].iter().filter(same).find(|o| o.params == stage.params) {
            if let (Some(i), Some(j)) = (instance(first), instance(stage)) {
                found.push((first.name.clone(), stage.name.clone(), i, j));
            }
        }
    }
    for (first, again, i, j) in found {
        let d = duplicate_instance(a, s, (&first, i), (&again, j));
        a.push(d);
    }
}

/// The diagnostic for instance `again` of sweep `s` resolving to the values of `first`,
/// pointing at the sweep values that differ only in spelling.
fn duplicate_instance(a: &Analyzer<'_>, s: usize, first: (&str, usize), again: (&str, usize)) -> Diagnostic {
    let entry = &a.world.sweeps[s];
    let (bi, bj) = (&entry.instances[first.1].bindings, &entry.instances[again.1].bindings);
    let differ = bi.iter().zip(bj).find(|(x, y)| x.expr.span != y.expr.span);
    let msg = format!("sweep instances `{}` and `{}` resolve to the same parameters", first.0, again.0);
    let (span, earlier) = differ.map_or((entry.decl.span, None), |(x, y)| (y.expr.span, Some(x.expr.span)));
    let mut d = Diagnostic::new(a.sources, codes::DUPLICATE_INSTANCE, msg, span, format!("gives `{}`", again.0));
    if let Some(earlier) = earlier.filter(|e| e.source == span.source) {
        d = d.with_label(earlier, format!("same value as `{}`", first.0));
    }
    d.with_help(
        "with defaults filled in and ints widened to floats the two are equal, so they would be one \
         stage run twice into one folder; remove one of the values (or move a stage that uses no sweep \
         variable out of the sweep)",
    )
}

/// An expression as instance names show it: no spaces, ints in full,
/// constructor fields in written order (`min_snr{gamma=5}`), and names of
/// params replaced by their values (`params` looks one up), so an instance's
/// name follows `--set`.
#[must_use]
pub fn render<'e>(expr: &Expr, params: &dyn Fn(&str) -> Option<&'e Expr>) -> String {
    render_at(expr, params, 0)
}

fn render_at<'e>(expr: &Expr, params: &dyn Fn(&str) -> Option<&'e Expr>, depth: usize) -> String {
    let r = |e: &Expr| render_at(e, params, depth + 1);
    match &expr.kind {
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::None => "none".into(),
        ExprKind::Ident(n) => match params(n) {
            Some(value) if depth < MAX_HOPS => r(value),
            _ => n.clone(),
        },
        ExprKind::List(items) => format!("[{}]", items.iter().map(r).collect::<Vec<_>>().join(",")),
        ExprKind::Ctor(n, body) => {
            let fields: Vec<String> = body.fields.iter().map(|f| format!("{}={}", f.name.name, r(&f.value))).collect();
            format!("{}{{{}}}", n.name, fields.join(","))
        }
        ExprKind::Instance(n, bindings) => {
            let parts: Vec<String> = bindings.iter().map(|(v, e)| format!("{}={}", v.name, r(e))).collect();
            format!("{}[{}]", n.name, parts.join(","))
        }
    }
}

/// Looks up the params visible from `file` for [`render`].
pub fn params_of<'w>(world: &'w World<'_>, file: SourceId) -> impl Fn(&str) -> Option<&'w Expr> + 'w {
    move |name| world.params.get(name).filter(|p| world.sees(file, p.decl.span.source)).map(|p| p.value)
}
