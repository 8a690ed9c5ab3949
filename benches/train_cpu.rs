//! Benchmark: train_cpu.

fn main() {}
