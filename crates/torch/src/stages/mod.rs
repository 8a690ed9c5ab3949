//! The torch stage kinds and their dispatch. Only the worker binary calls [`run`]; the
//! front end starts the worker with the stage's spec, whose typed parameters the
//! checker already read and validated (`msnr::stages::kinds`).

pub mod checkpoint;
pub mod classifier;
pub mod fid;
pub mod sample;
pub mod train;
pub mod vae_encode;

use msnr::stages::{Reporter, StageError, StageResult, StageSpec};

/// Runs one torch kind's stage.
pub type WorkerRun = fn(&StageSpec, &dyn Reporter) -> Result<StageResult, StageError>;

/// The worker's line for every kind the front end's table marks `Exec::Worker`.
pub static WORKER_KINDS: &[(&str, WorkerRun)] = &[
    ("train", train::run),
    ("classifier", classifier::run),
    ("checkpoint", checkpoint::run),
    ("sample", sample::run),
    ("fid_reference", fid::run_reference),
    ("fid", fid::run),
    ("vae_encode", vae_encode::run),
];

/// Runs a torch stage in this (worker) process.
///
/// # Errors
/// Whatever the stage reports; a kind without a worker line is an error naming it.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    match WORKER_KINDS.iter().find(|(name, _)| *name == spec.kind) {
        Some((_, run)) => run(spec, reporter),
        None => Err(StageError::Failed(format!("stage kind `{}` has no torch implementation", spec.kind))),
    }
}

#[cfg(test)]
mod tests {
    use msnr::stages::{Exec, KINDS};

    use super::WORKER_KINDS;

    #[test]
    fn every_torch_kind_has_a_worker_line_and_no_other_kind_does() {
        for kind in KINDS {
            let has_line = WORKER_KINDS.iter().any(|(name, _)| *name == kind.name);
            assert_eq!(has_line, matches!(kind.exec, Exec::Worker), "kind `{}`", kind.name);
        }
    }
}
