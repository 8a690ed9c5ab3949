//! Benchmark: noop_run.

fn main() {}
