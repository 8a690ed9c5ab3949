//! Dispatch for the kinds that run inside the front end process (no libtorch).

use super::spec::{Reporter, StageError, StageResult, StageSpec};

/// Runs a non-torch stage in this process.
///
/// # Errors
/// Whatever the stage reports; an unknown kind is an error naming it.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    match spec.kind.as_str() {
        "images" => super::images::run(spec, reporter),
        "mnist" => super::images::run_mnist(spec, reporter),
        "crop" => super::crop::run(spec, reporter),
        "download" => super::download::run(spec, reporter),
        other => Err(StageError::Failed(format!("stage kind `{other}` has no in-process implementation"))),
    }
}
