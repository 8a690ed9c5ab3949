//! Stage kinds: one module per kind, plus the spec/result protocol every
//! implementation speaks (in process or in the worker).
//!
//! Kinds that need libtorch (`train`; later `sample`, `fid`, `vae_encode`) live in the
//! `msnr-torch` crate and run only in its `msnr-worker` process.

pub mod archive;
pub mod crop;
pub mod download;
pub mod images;
pub mod local;
pub mod registry;
pub mod spec;

pub use spec::{Reporter, StageError, StageResult, StageSpec};
