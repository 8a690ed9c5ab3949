//! Benchmark: crop.

fn main() {}
