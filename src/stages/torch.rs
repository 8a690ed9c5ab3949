//! Dispatch for the kinds that need libtorch. Only the worker binary calls this.

use super::spec::{Reporter, StageError, StageResult, StageSpec};

/// Runs a torch stage in this (worker) process.
///
/// # Errors
/// Whatever the stage reports; an unknown kind is an error naming it.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    match spec.kind.as_str() {
        "train" => super::train::run(spec, reporter),
        other => Err(StageError::Failed(format!("stage kind `{other}` has no torch implementation"))),
    }
}
