//! `msnr worker SPEC` (hidden): runs one stage of a kind that needs no libtorch from the
//! spec file a run wrote, reporting on stdout with the worker protocol
//! ([`crate::run::protocol`]), as `msnr-worker` does for the torch kinds. A SLURM job of
//! `msnr run --executor slurm` runs it (see [`crate::run::slurm`]).

use std::path::Path;

use super::Failure;
use crate::run::protocol::{Event, StdoutReporter};
use crate::stages::{kinds, Exec, StageSpec};

/// Runs the stage of `spec_path`; the stage's error is reported as an `error` event and
/// fails the command.
pub(super) fn worker(spec_path: &Path) -> Result<(), Failure> {
    let result = read(spec_path).and_then(|spec| match kinds::implemented(&spec.kind).map(|k| k.exec) {
        Ok(Exec::Local(run)) => run(&spec, &StdoutReporter).map_err(|e| e.to_string()),
        Ok(_) => Err(format!("stage kind `{}` runs in msnr-worker, not in `msnr worker`", spec.kind)),
        Err(e) => Err(e),
    });
    match result {
        Ok(result) => {
            StdoutReporter::send(&Event::Result(result));
            Ok(())
        }
        Err(e) => {
            StdoutReporter::send(&Event::Error(e.clone()));
            Err(Failure::Message(e))
        }
    }
}

/// The spec in `path`.
fn read(path: &Path) -> Result<StageSpec, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read stage spec {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("stage spec {}: {e}", path.display()))
}
