//! Where the executor's stages run: on this machine (in this process or a local
//! `msnr-worker`), or as SLURM jobs ([`super::slurm`]). Everything else a run does
//! (keying, the store's locks and staging, commits, the lockfile) is the executor's and
//! the same for both.

use crate::cache::{CacheKey, KeyValue};
use crate::stages::{Exec, Kind, Reporter, StageError, StageResult, StageSpec};

use super::budget::Need;
use super::slurm::Slurm;
use super::worker::{self, Placement};

/// How stale stages are run.
#[derive(Debug)]
pub enum Launcher {
    /// On this machine, within the run's budget of cores and GPUs.
    Local,
    /// Each stage as one SLURM job; the budget only limits the jobs in the queue at once.
    Slurm(Box<Slurm>),
}

impl Launcher {
    /// What a stage keyed as `key` takes from the run's budget.
    #[must_use]
    pub fn need(&self, info: &Kind, key: &CacheKey) -> Need {
        match self {
            Self::Local => {
                let cuda = key.torch.as_ref().is_some_and(|t| t.device == "cuda");
                let all_cores = key.torch.as_ref().is_some_and(|t| t.device == "cpu");
                // A data-parallel `train` runs one rank per GPU (`devices = 1` is not in the key).
                let devices = match key.params.get("devices") {
                    Some(KeyValue::Int(n)) => usize::try_from(*n).unwrap_or(1).max(1),
                    _ => 1,
                };
                Need { max_cores: info.max_cores, gpus: if cuda { devices } else { 0 }, all_cores }
            }
            // A job slot: its cores and GPUs are the cluster's to give.
            Self::Slurm(_) => Need::ONE,
        }
    }

    /// Runs a staged stage (its spec names the staging folders) and waits for its end.
    ///
    /// # Errors
    /// The stage's own error, or how its worker or job ended without a result.
    pub fn run(
        &self,
        info: &Kind,
        spec: &StageSpec,
        reporter: &dyn Reporter,
        placement: &Placement,
    ) -> Result<StageResult, StageError> {
        match (self, info.exec) {
            (_, Exec::Planned) => Err(StageError::Failed(format!("stage kind `{}` is not implemented yet", spec.kind))),
            (Self::Local, Exec::Local(run)) => run(spec, reporter),
            (Self::Local, Exec::Worker) => worker::run(spec, reporter, placement),
            (Self::Slurm(slurm), _) => slurm.run(info, spec, reporter),
        }
    }

    /// Says that a stage ended without running (cached, failed to key, skipped): a job
    /// queued ahead for it is cancelled.
    pub fn settled(&self, stage: &str) {
        if let Self::Slurm(slurm) = self {
            slurm.settled(stage);
        }
    }

    /// Stops every running stage that can be stopped (Ctrl-C): kills the local workers,
    /// cancels the SLURM jobs.
    pub fn stop_all(&self) {
        match self {
            Self::Local => worker::stop_all(),
            Self::Slurm(_) => super::slurm::cancel_all(),
        }
    }
}
