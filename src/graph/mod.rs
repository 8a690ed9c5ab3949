//! The stage DAG (petgraph), its validation and the plan.
