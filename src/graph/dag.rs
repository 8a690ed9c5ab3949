//! The dependency graph of a pipeline's stage instances.

use std::collections::HashMap;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::lang::{codes, Diagnostic, Diagnostics, Pipeline, Span};

/// Stage instances as nodes (their index in `Pipeline::stages`), an edge from
/// each input to the stage that reads it, labelled with the reference's span.
#[derive(Debug)]
pub struct Dag {
    graph: DiGraph<usize, Span>,
    index: HashMap<String, NodeIndex>,
    order: Vec<usize>,
}

impl Dag {
    /// Builds and validates the graph: every reference must name a stage, and
    /// there must be no cycle (each cycle is reported with every stage on it).
    ///
    /// # Errors
    /// One diagnostic per cycle or dangling reference.
    pub fn build(pipeline: &Pipeline) -> Result<Self, Diagnostics> {
        let mut graph = DiGraph::new();
        let index: HashMap<String, NodeIndex> =
            pipeline.stages.iter().enumerate().map(|(i, s)| (s.name.clone(), graph.add_node(i))).collect();
        let mut errors = Vec::new();
        for stage in &pipeline.stages {
            for (input, span) in &stage.refs {
                match index.get(input) {
                    Some(&from) => {
                        graph.update_edge(from, index[&stage.name], *span);
                    }
                    None => errors.push(Diagnostic::new(
                        &pipeline.sources,
                        codes::UNDEFINED_STAGE,
                        format!("stage `{}` refers to undefined stage `{input}`", stage.name),
                        *span,
                        "not a stage",
                    )),
                }
            }
        }
        errors.extend(cycle_errors(pipeline, &graph));
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let order = declaration_ordered_toposort(&graph);
        Ok(Self { graph, index, order })
    }

    /// Stage indices in a topological order (inputs before readers; ties in declaration order).
    #[must_use]
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Indices of the stages that `stage` reads directly.
    #[must_use]
    pub fn inputs(&self, stage: &str) -> Vec<usize> {
        self.neighbors(stage, Direction::Incoming)
    }

    /// Indices of the stages that read `stage` directly.
    #[must_use]
    pub fn readers(&self, stage: &str) -> Vec<usize> {
        self.neighbors(stage, Direction::Outgoing)
    }

    /// The edges as (input index, reader index) pairs.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.graph.raw_edges().iter().map(|e| (self.graph[e.source()], self.graph[e.target()]))
    }

    /// `targets` and everything they depend on, as a membership mask over stage indices.
    #[must_use]
    pub fn closure(&self, targets: &[usize]) -> Vec<bool> {
        let mut keep = vec![false; self.graph.node_count()];
        let mut todo: Vec<NodeIndex> = targets.iter().map(|&i| NodeIndex::new(i)).collect();
        while let Some(n) = todo.pop() {
            if !std::mem::replace(&mut keep[self.graph[n]], true) {
                todo.extend(self.graph.neighbors_directed(n, Direction::Incoming));
            }
        }
        keep
    }

    fn neighbors(&self, stage: &str, dir: Direction) -> Vec<usize> {
        let Some(&n) = self.index.get(stage) else { return Vec::new() };
        let mut out: Vec<usize> = self.graph.neighbors_directed(n, dir).map(|m| self.graph[m]).collect();
        out.sort_unstable();
        out
    }
}

/// Kahn's algorithm, always taking the ready stage declared first, so the order
/// (and plain output) is stable. The graph is acyclic here.
fn declaration_ordered_toposort(graph: &DiGraph<usize, Span>) -> Vec<usize> {
    let mut missing: Vec<usize> =
        graph.node_indices().map(|n| graph.neighbors_directed(n, Direction::Incoming).count()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..missing.len()).filter(|&i| missing[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(missing.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(graph[NodeIndex::new(i)]);
        for reader in graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            missing[reader.index()] -= 1;
            if missing[reader.index()] == 0 {
                ready.push(Reverse(reader.index()));
            }
        }
    }
    order
}

/// One diagnostic per strongly connected component with more than one stage
/// (or a stage reading itself), labelling every reference along the cycle.
fn cycle_errors(pipeline: &Pipeline, graph: &DiGraph<usize, Span>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for scc in tarjan_scc(graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let mut members: Vec<usize> = scc.iter().map(|&n| graph[n]).collect();
        members.sort_unstable();
        let names: Vec<&str> = members.iter().map(|&i| pipeline.stages[i].name.as_str()).collect();
        let edges: Vec<_> = graph
            .raw_edges()
            .iter()
            .filter(|e| scc.contains(&e.source()) && scc.contains(&e.target()))
            .map(|e| (graph[e.source()], graph[e.target()], e.weight))
            .collect();
        out.push(cycle_diagnostic(pipeline, &names, &edges));
    }
    out
}

fn cycle_diagnostic(pipeline: &Pipeline, names: &[&str], edges: &[(usize, usize, Span)]) -> Diagnostic {
    let (first_from, first_to, first_span) = edges[0];
    let stage = |i: usize| pipeline.stages[i].name.as_str();
    let mut diag = Diagnostic::new(
        &pipeline.sources,
        codes::DEPENDENCY_CYCLE,
        format!(
            "dependency cycle between stages {}",
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ),
        first_span,
        format!("`{}` reads `{}`", stage(first_to), stage(first_from)),
    )
    .with_help(
        "a stage cannot depend on its own output, directly or through other stages; break one of these references",
    );
    for &(from, to, span) in &edges[1..] {
        if span.source == first_span.source {
            diag = diag.with_label(span, format!("`{}` reads `{}`", stage(to), stage(from)));
        }
    }
    diag
}
