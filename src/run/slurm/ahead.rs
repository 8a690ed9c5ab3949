//! Queueing ahead: once a stage's job is submitted, the stages that read it (and theirs)
//! are submitted at once as held jobs (`sbatch --hold`) depending on their inputs' jobs
//! (`--dependency=afterok:...`), so the queue holds the pipeline's DAG while it runs.
//!
//! A held job runs a stub that executes its stage's real batch script, which msnr writes
//! when it releases the job (`scontrol release`): after the stage's inputs are stored and
//! it is keyed, since its key (hence its work folder, and whether it needs to run at all)
//! depends on its inputs' output hashes. A stage that turns out cached, or whose input
//! failed, has its held job cancelled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::lang::Value;
use crate::stages::{Kind, Reporter};

use super::config::{JobOf, SlurmConfig};
use super::runs::RunDir;
use super::{job, Jobs};

/// A selected stage as known before it is keyed.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Its kind.
    pub kind: &'static Kind,
    /// `cpu` or `cuda` (its job's GPUs).
    pub device: String,
    /// Its resolved parameters.
    pub params: BTreeMap<String, Value>,
    /// The selected stages it reads.
    pub inputs: Vec<String>,
    /// The selected stages that read it.
    pub readers: Vec<String>,
}

/// A job of this run.
#[derive(Clone, Debug)]
struct Queued {
    id: String,
    /// Submitted held, not released yet.
    held: bool,
}

/// The run's stages, its jobs by stage, and the folder of its batch scripts.
#[derive(Debug)]
pub struct Ahead {
    graph: BTreeMap<String, Planned>,
    run: RunDir,
    queued: Mutex<BTreeMap<String, Queued>>,
}

impl Ahead {
    /// The stages of a run (by name), its scripts kept in `run`.
    #[must_use]
    pub fn new(graph: BTreeMap<String, Planned>, run: RunDir) -> Self {
        Self { graph, run, queued: Mutex::new(BTreeMap::new()) }
    }

    /// The folder of the run's batch scripts and SLURM output files.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.run.path()
    }

    /// The batch script of `stage` (written when it is submitted or released).
    #[must_use]
    pub fn script(&self, stage: &str) -> PathBuf {
        self.dir().join(format!("{}.sh", tag(stage)))
    }

    /// Writes the stub `sbatch` submits for `stage`: it runs the stage's script.
    ///
    /// # Errors
    /// When the folder or file cannot be written.
    pub fn stub(&self, stage: &str) -> Result<PathBuf, String> {
        let path = self.dir().join(format!("{}.stub", tag(stage)));
        let script = self.script(stage).to_string_lossy().replace('\'', r"'\''");
        let text = format!("#!/bin/sh\n# msnr: stage `{stage}`\nexec /bin/sh '{script}'\n");
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Records the job of `stage`, submitted (or released) now.
    pub fn submitted(&self, stage: &str, id: &str) {
        self.run.record(id);
        self.lock().insert(stage.to_string(), Queued { id: id.to_string(), held: false });
    }

    /// The held job of `stage`, now counted as released, if it was queued ahead.
    pub fn take_held(&self, stage: &str) -> Option<String> {
        let mut queued = self.lock();
        let q = queued.get_mut(stage).filter(|q| q.held)?;
        q.held = false;
        Some(q.id.clone())
    }

    /// Submits held jobs for the readers of `stage`, and theirs, each depending on the jobs
    /// of its inputs. A refusal stops the queueing ahead, saying so (the stages still run,
    /// submitted when ready).
    pub fn queue_readers(&self, stage: &str, config: &SlurmConfig, reporter: &dyn Reporter) {
        let mut todo: Vec<String> = self.graph.get(stage).map(|p| p.readers.clone()).unwrap_or_default();
        while let Some(r) = todo.pop() {
            let (Some(planned), false) = (self.graph.get(&r), self.lock().contains_key(&r)) else { continue };
            let deps: Vec<String> =
                planned.inputs.iter().filter_map(|i| self.lock().get(i).map(|q| q.id.clone())).collect();
            match self.submit_held(&r, planned, &deps, config) {
                Ok(id) => {
                    reporter.log(&format!("queued `{r}` as held SLURM job {id} (afterok:{})", deps.join(":")));
                    self.lock().insert(r.clone(), Queued { id, held: true });
                    todo.extend(planned.readers.iter().cloned());
                }
                Err(e) => {
                    reporter.log(&format!("not queueing `{r}` ahead: {e}"));
                    return;
                }
            }
        }
    }

    /// Cancels the held job of a stage that ended without running (cached, failed to key,
    /// skipped after a failed input).
    pub fn settled(&self, stage: &str) {
        let held = self.lock().remove(stage).filter(|q| q.held);
        if let Some(q) = held {
            job::cancel(&q.id);
            Jobs::forget(&q.id);
        }
    }

    fn submit_held(
        &self,
        stage: &str,
        planned: &Planned,
        deps: &[String],
        config: &SlurmConfig,
    ) -> Result<String, String> {
        let of = JobOf { name: stage, device: &planned.device, params: &planned.params };
        let resources = config.resources(planned.kind, &of);
        let mut args = job_args(stage, self.dir());
        args.extend(resources.args());
        args.push("--hold".into());
        args.push(format!("--dependency=afterok:{}", deps.join(":")));
        let id = Jobs::submit(&args, &self.stub(stage)?)?;
        self.run.record(&id);
        Ok(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Queued>> {
        self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `sbatch` arguments every job of `stage` gets: its name, SLURM's output file and
/// working folder in the run's folder `dir`.
#[must_use]
pub fn job_args(stage: &str, dir: &Path) -> Vec<String> {
    vec![
        format!("--job-name=msnr:{stage}"),
        format!("--output={}", dir.join("slurm-%j.out").display()),
        format!("--chdir={}", dir.display()),
    ]
}

/// A file name for a stage (sweep instances' names hold brackets and braces).
fn tag(stage: &str) -> String {
    blake3::hash(stage.as_bytes()).to_hex()[..16].to_string()
}
