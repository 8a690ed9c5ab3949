//! The analyzer's output: a pipeline with every stage resolved, sweeps
//! expanded, params substituted and defaults filled. Everything downstream
//! (graph, cache, runner) works on this, never on the AST.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::source::{Sources, Span};
use super::value::Value;

/// A checked pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The main `.msnr` file.
    pub path: PathBuf,
    /// Every file loaded, for diagnostics.
    pub sources: Sources,
    /// Stage instances in declaration order (sweeps expanded in place).
    pub stages: Vec<Stage>,
    /// Final values of the `param` declarations, after `--set` overrides.
    pub params: BTreeMap<String, Value>,
}

/// One stage instance.
#[derive(Clone, Debug)]
pub struct Stage {
    /// Unique instance name: `model`, or `model[gamma=5]` inside a sweep.
    pub name: String,
    /// Stage kind (`train`); a kind declared in the stdlib.
    pub kind: String,
    /// Every declared parameter of the kind, defaults filled; unset optional ones are [`Value::None`].
    pub params: BTreeMap<String, Value>,
    /// Each reference to another stage with the span of the reference, in source order.
    pub refs: Vec<(String, Span)>,
    /// The span of the whole declaration's name (primary label for stage-level errors).
    pub span: Span,
    /// The span of each parameter's value as written (absent for defaults), so later
    /// checks (e.g. a dataset that cannot fit the net) can point at the parameter.
    pub param_spans: BTreeMap<String, Span>,
    /// For a swept instance: the sweep's base name and its bindings (`gamma` -> 5).
    pub sweep: Option<SweepInstance>,
}

/// Where a swept stage instance came from.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepInstance {
    /// The stage name as written (`model`).
    pub base: String,
    /// The sweep variables of this instance, in declaration order.
    pub bindings: Vec<(String, Value)>,
}

impl Pipeline {
    /// The stage instance with this name.
    #[must_use]
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

impl Stage {
    /// The names of the stages this one reads, deduplicated, in source order.
    #[must_use]
    pub fn inputs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (name, _) in &self.refs {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        out
    }
}
