//! The `crop` stage (placeholder until its issue lands).

use super::spec::{Reporter, StageError, StageResult, StageSpec};

/// Runs the stage.
///
/// # Errors
/// Always, until implemented.
pub fn run(spec: &StageSpec, _reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    Err(StageError::Failed(format!("stage kind `{}` is not implemented yet", spec.kind)))
}
