//! The checker's last pass: every stage's parameters read into its kind's typed struct
//! ([`kinds::KINDS`]) in topological order, so each stage sees its inputs' output shapes
//! (a dataset that cannot fit the net is caught here). All problems of all stages are
//! reported together, each at its parameter's span.

use std::collections::{BTreeMap, HashMap};

use crate::graph::Dag;
use crate::lang::types::{Type, FILES};
use crate::lang::{stdlib, Diagnostic, Diagnostics, Pipeline, Stage, Value};

use super::kinds::{self, Checked};
use super::params::{ParamError, Reader, Shape};

/// Resolves a torch stage's `device` parameter (`auto`, `cpu`, `cuda`) to `cpu` or `cuda`;
/// `None` when it cannot be resolved here (the run reports that).
pub type DeviceResolver<'a> = &'a dyn Fn(&str) -> Option<&'static str>;

/// Checks every stage's parameters; returns each stage's typed parameters and shape, by index.
///
/// # Errors
/// One diagnostic per unusable parameter value, all stages together.
pub fn check(pipeline: &Pipeline, dag: &Dag, device: DeviceResolver<'_>) -> Result<Vec<Checked>, Diagnostics> {
    let unknown = Checked { params: serde_json::Value::Null, shape: Shape::UNKNOWN };
    let mut checked = vec![unknown; pipeline.stages.len()];
    let mut errors = Vec::new();
    let index: HashMap<&str, usize> = pipeline.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    for &i in dag.order() {
        let stage = &pipeline.stages[i];
        let shape_of = |name: &str| index.get(name).map(|&j| checked[j].shape);
        match check_stage(stage, &|name| shape_of(name).unwrap_or_default(), device) {
            Ok(c) => checked[i] = c,
            Err(es) => errors.extend(es.iter().map(|e| diagnostic(pipeline, stage, e))),
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(Diagnostics(errors))
    }
}

/// Checks one stage given its inputs' shapes.
///
/// # Errors
/// Every unusable parameter value.
pub fn check_stage(
    stage: &Stage,
    inputs: &dyn Fn(&str) -> Shape,
    device: DeviceResolver<'_>,
) -> Result<Checked, Vec<ParamError>> {
    let Some(kind) = kinds::kind(&stage.kind) else {
        return Err(vec![ParamError::new(
            "kind",
            format!("stage kind `{}` has no entry in the kinds table", stage.kind),
        )]);
    };
    let requested = match stage.params.get("device") {
        Some(Value::Ctor { name, .. }) => Some(name.as_str()),
        _ => None,
    };
    let resolved = requested.and_then(device);
    let mut r = Reader::new(&stage.params, inputs, resolved);
    let got = (kind.check)(&mut r);
    r.finish(got)
}

/// The diagnostic for one parameter error, at the parameter's value (or the stage's
/// name when the value is a default).
fn diagnostic(pipeline: &Pipeline, stage: &Stage, e: &ParamError) -> Diagnostic {
    let written = stage.param_spans.get(e.top()).copied();
    let span = written.unwrap_or(stage.span);
    let label = if written.is_some() { "this value" } else { "the default of this parameter" };
    let help = e.help.clone().unwrap_or_else(|| format!("`msnr doc {}` lists each parameter's meaning", stage.kind));
    Diagnostic::new(
        &pipeline.sources,
        e.code,
        format!("stage `{}`: `{}`: {}", stage.name, e.param, e.message),
        span,
        label,
    )
    .with_help(help)
}

/// Every parameter of `kind` with its stdlib default, and a plausible value for each
/// required one (a stage reference, a path, 1, a URL, the family's first constructor):
/// what a stage spec built outside a pipeline starts from.
#[must_use]
pub fn defaults_for(kind: &str) -> BTreeMap<String, Value> {
    let Some(sig) = stdlib().kind(kind) else { return BTreeMap::new() };
    sig.params.iter().map(|p| (p.name.clone(), p.default.clone().unwrap_or_else(|| placeholder(&p.ty)))).collect()
}

/// A value of type `ty` for a required parameter left out.
fn placeholder(ty: &Type) -> Value {
    match ty.alternatives()[0] {
        Type::Int => Value::Int(1),
        Type::Float => Value::Float(1.0),
        Type::Bool => Value::Bool(false),
        Type::Str => Value::Str("https://example.org/file".into()),
        Type::Path => Value::Path(".".into()),
        Type::List(_) => Value::List(Vec::new()),
        Type::Artifact(a) if a == FILES => Value::Path(".".into()),
        Type::Artifact(a) => Value::Stage(a.clone()),
        Type::Family(f) => first_constructor(f),
        Type::Optional(_) | Type::Union(_) => Value::None,
    }
}

fn first_constructor(family: &str) -> Value {
    let Some(variant) = stdlib().family(family).and_then(|f| f.variants.first()) else { return Value::None };
    let args = variant.params.iter().map(|p| (p.name.clone(), p.default.clone().unwrap_or(Value::None))).collect();
    Value::Ctor { name: variant.name.clone(), args }
}
