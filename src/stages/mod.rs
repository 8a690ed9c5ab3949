//! Stage kinds: the table of kinds ([`kinds`]), one module per kind with its typed
//! parameters (and its `run`, for the kinds that run in this process), the reader
//! and checker of parameters, and the spec/result protocol every implementation
//! speaks (in process or in the worker).
//!
//! Kinds that need libtorch (`train`, `classifier`, `sample`, `fid`, `vae_encode`) keep their
//! parameter structs here, where `msnr check` validates them, and their `run` in the
//! `msnr-torch` crate, which runs only in its `msnr-worker` process.

pub mod archive;
pub mod check;
pub mod checkpoint;
pub mod classifier;
pub mod crop;
pub mod download;
pub mod fid;
pub mod images;
pub mod kinds;
pub mod params;
pub mod sample;
pub mod spec;
pub mod train;
pub mod vae_encode;

pub use kinds::{Checked, Exec, Kind, KindParams, KINDS};
pub use spec::{Reporter, StageError, StageResult, StageSpec};
