//! The one integration test binary: each module covers one area end to end.

mod cache;
mod cli;
mod data;
mod download;
mod graph;
mod lang;
mod report;
mod slurm;
