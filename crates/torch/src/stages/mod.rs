//! The torch stage kinds and their dispatch. Only the worker binary calls
//! [`run`]; the front end starts the worker with the stage's spec.

pub mod train;

use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

/// Runs a torch stage in this (worker) process.
///
/// # Errors
/// Whatever the stage reports; an unknown kind is an error naming it.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    match spec.kind.as_str() {
        "train" => train::run(spec, reporter),
        other => Err(StageError::Failed(format!("stage kind `{other}` has no torch implementation"))),
    }
}
