//! `msnr graph`: the DAG as Graphviz dot or Mermaid text.

use std::fmt::Write as _;

use crate::lang::Pipeline;

use super::Dag;

/// Output formats of `msnr graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Graphviz `digraph`.
    Dot,
    /// A Mermaid `flowchart`.
    Mermaid,
}

/// Renders the graph; node labels show the instance name and stage kind.
#[must_use]
pub fn render(pipeline: &Pipeline, dag: &Dag, format: Format) -> String {
    match format {
        Format::Dot => dot(pipeline, dag),
        Format::Mermaid => mermaid(pipeline, dag),
    }
}

fn dot(pipeline: &Pipeline, dag: &Dag) -> String {
    let mut out = String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
    for (i, s) in pipeline.stages.iter().enumerate() {
        let _ = writeln!(out, "  n{i} [label={:?}];", format!("{}\n{}", s.name, s.kind));
    }
    for (from, to) in dag.edges() {
        let _ = writeln!(out, "  n{from} -> n{to};");
    }
    out.push_str("}\n");
    out
}

fn mermaid(pipeline: &Pipeline, dag: &Dag) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, s) in pipeline.stages.iter().enumerate() {
        let label = format!("{}<br/>{}", s.name, s.kind).replace('"', "#quot;");
        let _ = writeln!(out, "  n{i}[\"{label}\"]");
    }
    for (from, to) in dag.edges() {
        let _ = writeln!(out, "  n{from} --> n{to}");
    }
    out
}
