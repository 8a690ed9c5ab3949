//! Stage kinds: one module per kind, plus the spec/result protocol every
//! implementation speaks (in process or in the worker).
//!
//! Kinds that need libtorch run only in the `msnr-worker` process; their
//! dispatch lives in [`torch`], which the front end binary never calls.

pub mod archive;
pub mod crop;
pub mod download;
pub mod images;
pub mod local;
pub mod registry;
pub mod spec;
pub mod torch;
pub mod train;

pub use spec::{Reporter, StageError, StageResult, StageSpec};
