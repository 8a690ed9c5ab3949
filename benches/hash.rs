//! Benchmark: hash.

fn main() {}
