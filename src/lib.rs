//! msnr: a declarative pipeline language and its runner for reproducible
//! diffusion-training experiments.
//!
//! The crate reads top-down like the pipeline it runs:
//! - [`lang`]: source files, the parser, the analyzer and diagnostics;
//! - [`graph`]: the stage DAG, its validation and the plan (what is stale, why);
//! - [`cache`]: cache keys, the content-addressed store, the lockfile, file hashes;
//! - [`run`]: the executor, progress reporting and the worker protocol;
//! - [`stages`]: one module per stage kind;
//! - [`data`]: the dataset artifact format;
//! - [`diffusion`]: schedules, targets, weightings, models (libtorch).
//!
//! The `msnr` binary uses everything except the libtorch-backed modules, which
//! only the `msnr-worker` binary calls, so the front end never loads libtorch.

pub mod cache;
pub mod cli;
pub mod data;
pub mod diffusion;
pub mod graph;
pub mod lang;
pub mod run;
pub mod stages;
