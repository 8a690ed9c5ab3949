//! msnr: a declarative pipeline language and its runner for reproducible
//! diffusion-training experiments.
//!
//! The crate reads top-down like the pipeline it runs:
//! - [`lang`]: source files, the parser, the analyzer and diagnostics;
//! - [`graph`]: the stage DAG, its validation and the plan (what is stale, why);
//! - [`cache`]: cache keys, the content-addressed store, the lockfile, file hashes;
//! - [`run`]: the executor, progress reporting and the worker protocol;
//! - [`stages`]: one module per stage kind;
//! - [`report`]: the recorded results as tables, series and steps-to-reach (compare, plot, report);
//! - [`data`]: the dataset artifact format;
//! - [`diffusion`]: schedules, targets, weightings and optimizer settings (no libtorch);
//! - [`nets`]: denoiser configurations and their validation (no libtorch);
//! - [`malloc`]: the allocator settings both binaries start with;
//! - [`console`]: terminal output that a closed stdout or stderr cannot stop.
//!
//! Nothing here links libtorch: the diffusion numerics, the networks and the
//! torch stages live in the `msnr-torch` crate (`crates/torch`), whose
//! `msnr-worker` binary the runner starts for them. Keeping them in another
//! crate makes it impossible for the front end to load libtorch by accident.

pub mod cache;
pub mod cli;
pub mod console;
pub mod data;
pub mod diffusion;
pub mod graph;
pub mod lang;
pub mod malloc;
pub mod nets;
pub mod report;
pub mod run;
pub mod stages;
