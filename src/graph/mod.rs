//! The stage DAG (petgraph), its validation and the plan.
//!
//! [`Dag::build`] turns a checked [`Pipeline`](crate::lang::Pipeline) into a
//! graph with a `name -> node` map beside it and rejects dependency cycles,
//! reporting each strongly connected component whole. [`render`] writes it as
//! Graphviz dot or Mermaid; [`plan`] decides what is stale and why.

pub mod dag;
pub mod plan;
pub mod render;

pub use dag::Dag;
