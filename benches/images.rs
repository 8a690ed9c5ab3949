//! Benchmark: images.

fn main() {}
