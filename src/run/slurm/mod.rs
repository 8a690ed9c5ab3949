//! Running stages as SLURM jobs (`msnr run --executor slurm`, or `[executor] kind =
//! "slurm"` in `msnr.toml`).
//!
//! The executor keys, locks and stages each stale stage exactly as it does locally (the
//! store must be on a filesystem the compute nodes share); then, instead of starting a
//! worker, this module writes the stage's spec and a batch script into the stage's work
//! folder and submits it with `sbatch`, with the resources [`config`] gives it. The job
//! runs the very command the local executor runs (`msnr-worker SPEC`, or `msnr worker
//! SPEC` for the kinds without libtorch), its event lines going to a file that msnr tails
//! for progress; msnr follows the job with `squeue` (then `sacct`), and when it has
//! ended commits the result, or fails the stage with SLURM's state and reason. A job that
//! is cancelled, fails or runs out of time leaves nothing in the store; its work folder
//! (a training's checkpoints) stays, so a re-run resumes.
//!
//! A stage's readers are queued ahead as held jobs depending on its job ([`ahead`]), and
//! released once their inputs are stored and they are keyed.

pub mod ahead;
pub mod config;
pub mod job;
pub mod runs;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stages::{Exec, Kind, Reporter, StageError, StageResult, StageSpec};

use super::interrupt;
use super::worker::{self, Placement, Reported};
use ahead::{Ahead, Planned};
use config::{Resources, SlurmConfig};
use job::JobState;
use runs::RunDir;

/// How often the event file is read and Ctrl-C looked for while a job runs.
const TICK: Duration = Duration::from_millis(100);

/// How often a job is queried once its worker reported its end (it is about to end).
const FINISHING_POLL: Duration = Duration::from_millis(200);

/// State queries that may fail in a row (a busy controller) before the stage fails.
const QUERY_RETRIES: u32 = 30;

/// The SLURM executor of one run.
#[derive(Debug)]
pub struct Slurm {
    /// `[slurm]` of `msnr.toml`.
    config: SlurmConfig,
    /// The run's stages and jobs, for queueing readers ahead.
    ahead: Ahead,
}

impl Slurm {
    /// The executor of a run of the stages `graph` (by name), configured by `config`; its
    /// batch scripts and SLURM's output files go to a folder of its own under `parent`
    /// (removed when the run ends). First cancels the jobs that killed runs left (see
    /// [`runs`]); returns the executor and how many it cancelled.
    ///
    /// # Errors
    /// When the run's folder cannot be created.
    pub fn new(config: SlurmConfig, graph: BTreeMap<String, Planned>, parent: &Path) -> Result<(Self, usize), String> {
        let (run, cancelled) = RunDir::create(parent)?;
        Ok((Self { config, ahead: Ahead::new(graph, run) }, cancelled))
    }

    /// Cancels the held job of a stage that ended without running.
    pub fn settled(&self, stage: &str) {
        self.ahead.settled(stage);
    }
}

/// How long a job left by an earlier run may take to end once cancelled.
const LEFTOVER_WAIT: Duration = Duration::from_secs(120);

/// The files of one stage's job, in its work folder.
struct JobFiles {
    /// The id of the job that last ran in this work folder.
    id: PathBuf,
    spec: PathBuf,
    events: PathBuf,
    log: PathBuf,
    /// SLURM's own output (`slurm-<id>.out`; `%j` in the pattern).
    slurm_out: String,
}

impl JobFiles {
    fn new(work_dir: &Path, run_dir: &Path) -> Self {
        Self {
            id: work_dir.join("job"),
            spec: work_dir.join("spec.json"),
            events: work_dir.join("events"),
            log: work_dir.join("worker.log"),
            slurm_out: run_dir.join("slurm-%j.out").to_string_lossy().into_owned(),
        }
    }
}

impl Slurm {
    /// Runs the staged `spec` (a stage of kind `info`) as one job and waits for its end.
    ///
    /// # Errors
    /// The stage's own error, a job SLURM refused, or one that ended without a result
    /// (cancelled, failed, out of time or memory), with SLURM's state and reason.
    pub fn run(&self, info: &Kind, spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
        let files = JobFiles::new(&spec.work_dir, self.ahead.dir());
        stop_leftover(&files, reporter)?;
        let resources = self.config.resources(info, &spec.into());
        resources.check().map_err(|e| StageError::param("devices", e))?;
        let json = serde_json::to_vec_pretty(spec).map_err(|e| StageError::Failed(e.to_string()))?;
        std::fs::write(&files.spec, json).map_err(|e| StageError::io(&files.spec, e))?;
        let text = script(&command(info, &files.spec)?, &resources, &files);
        let path = self.ahead.script(&spec.name);
        std::fs::write(&path, text).map_err(|e| StageError::io(&path, e))?;
        let id = self.start(&spec.name, &resources, reporter).map_err(StageError::Failed)?;
        std::fs::write(&files.id, &id).map_err(|e| StageError::io(&files.id, e))?;
        self.ahead.queue_readers(&spec.name, &self.config, reporter);
        let ended = self.follow(&id, &files, reporter);
        Jobs::forget(&id);
        let (state, outcome) = ended?;
        match outcome {
            Some(Ok(result)) if state.state == "COMPLETED" => Ok(result),
            Some(Err(e)) => Err(with_rank_errors(e, &files, resources.tasks)),
            _ => Err(with_rank_errors(
                StageError::Failed(ended_message(&spec.name, &id, &state, &files)),
                &files,
                resources.tasks,
            )),
        }
    }

    /// Releases the job queued ahead for `stage` (its dependencies, all stored now, cleared),
    /// or submits one; returns its id.
    fn start(&self, stage: &str, resources: &Resources, reporter: &dyn Reporter) -> Result<String, String> {
        if let Some(id) = self.ahead.take_held(stage) {
            job::release(&id)?;
            reporter.log(&format!("released SLURM job {id}"));
            return Ok(id);
        }
        let mut args = ahead::job_args(stage, self.ahead.dir());
        args.extend(resources.args());
        let id = Jobs::submit(&args, &self.ahead.stub(stage)?).map_err(|e| format!("sbatch: {e}"))?;
        self.ahead.submitted(stage, &id);
        reporter.log(&format!("submitted as SLURM job {id} ({})", resources.args().join(" ")));
        Ok(id)
    }

    /// Relays the job's events until it ends; returns its last state and what the worker reported.
    fn follow(&self, id: &str, files: &JobFiles, reporter: &dyn Reporter) -> Result<(JobState, Reported), StageError> {
        let mut tail = Tail::new(&files.events);
        let (mut outcome, mut failures, mut said) = (None, 0, String::new());
        let poll = Duration::from_secs_f64(self.config.poll());
        let mut next_query = Instant::now();
        loop {
            tail.relay(reporter, &mut outcome);
            if interrupt::received().is_some() {
                job::cancel(id);
                return Err(StageError::Failed(format!("interrupted; SLURM job {id} cancelled")));
            }
            if Instant::now() >= next_query {
                match job::query(id) {
                    Ok(state) if state.ended() => {
                        tail.relay(reporter, &mut outcome);
                        return Ok((state, outcome));
                    }
                    Ok(state) => {
                        failures = 0;
                        if state.describe() != said {
                            said = state.describe();
                            reporter.log(&format!("SLURM job {id} {said}"));
                        }
                    }
                    Err(e) if failures >= QUERY_RETRIES => return Err(StageError::Failed(e)),
                    Err(_) => failures += 1,
                }
                next_query = Instant::now() + if outcome.is_some() { FINISHING_POLL } else { poll };
            }
            std::thread::sleep(TICK);
        }
    }
}

/// Cancels the job an earlier run left in this work folder if it still runs (that run's
/// msnr was killed, or lost its terminal), and waits for its end: two jobs must never
/// write the same checkpoints. The entry's lock, held by the caller, keeps any other
/// live run out.
fn stop_leftover(files: &JobFiles, reporter: &dyn Reporter) -> Result<(), StageError> {
    let Ok(id) = std::fs::read_to_string(&files.id) else { return Ok(()) };
    let id = id.trim();
    let (start, mut said) = (Instant::now(), false);
    while let Ok(state) = job::query(id) {
        if state.ended() {
            return Ok(());
        }
        if !said {
            reporter.log(&format!("cancelling SLURM job {id}, left running by an earlier run of this stage"));
            said = true;
        } else if start.elapsed() > LEFTOVER_WAIT {
            return Err(StageError::Failed(format!(
                "SLURM job {id}, left running by an earlier run of this stage, did not end when cancelled"
            )));
        }
        job::cancel(id);
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// Why a job ended without a result: SLURM's state and reason, the hint that goes with
/// it, and the last lines of the worker's log and of SLURM's own output.
fn ended_message(stage: &str, id: &str, job: &JobState, files: &JobFiles) -> String {
    let hint = match job.state.as_str() {
        "TIMEOUT" => "; raise its `time` in msnr.toml ([slurm.stage.NAME])",
        "OUT_OF_MEMORY" => "; raise its `mem` in msnr.toml ([slurm.stage.NAME])",
        "COMPLETED" => " without its worker reporting a result",
        _ => "",
    };
    let message = format!("SLURM job {id} of stage `{stage}` ended {}{hint}", job.describe());
    let message = worker::with_log_tail(message, &files.log);
    worker::with_log_tail(message, Path::new(&files.slurm_out.replace("%j", id)))
}

/// The worker command line the local executor would run for this kind.
fn command(info: &Kind, spec: &Path) -> Result<Vec<PathBuf>, StageError> {
    let exe = match info.exec {
        Exec::Worker => return Ok(vec![worker::worker_path()?, spec.to_path_buf()]),
        _ => std::env::current_exe().map_err(|e| StageError::Failed(format!("cannot locate msnr: {e}")))?,
    };
    Ok(vec![exe, PathBuf::from("worker"), spec.to_path_buf()])
}

/// The batch script: the thread variables a local worker gets for `cpus` cores, then the
/// worker with its events and log redirected into the work folder. A data-parallel train's
/// ranks are the job's tasks, started by `srun`: each finds rank 0's node and the store's
/// port (from the job id) in `MSNR_DDP_ADDR` / `MSNR_DDP_PORT`, and its rank in
/// `SLURM_PROCID`; rank 0's events and log go where a single worker's do, rank N's beside
/// them with `.N` appended.
fn script(command: &[PathBuf], resources: &Resources, files: &JobFiles) -> String {
    let threads = usize::try_from(resources.cpus).unwrap_or(1);
    let mut text = String::from("#!/bin/sh\n# Written by msnr run --executor slurm: one stage's worker.\n");
    for (var, value) in (Placement { threads, gpu: None }).env() {
        let _ = writeln!(text, "export {var}={value}");
    }
    let words: Vec<String> = command.iter().map(|w| quote(&w.to_string_lossy())).collect();
    let (events, log) = (quote(&files.events.to_string_lossy()), quote(&files.log.to_string_lossy()));
    if !resources.ranks() {
        let _ = writeln!(text, "exec {} >{events} 2>{log}", words.join(" "));
        return text;
    }
    text.push_str(
        "# Data-parallel ranks: rank 0's node (the job's first) serves their store, at its\n\
         # NodeAddr, on a port drawn from the job id.\n\
         first=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n\
         MSNR_DDP_ADDR=$(scontrol show node \"$first\" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p' | head -n 1)\n\
         export MSNR_DDP_ADDR=\"${MSNR_DDP_ADDR:-$first}\"\n\
         export MSNR_DDP_PORT=$((20000 + SLURM_JOB_ID % 20000))\n",
    );
    let per_rank = "e=$1 l=$2; shift 2; if [ \"$SLURM_PROCID\" = 0 ]; then exec \"$@\" >\"$e\" 2>\"$l\"; \
                    else exec \"$@\" >\"$e.$SLURM_PROCID\" 2>\"$l.$SLURM_PROCID\"; fi";
    let _ = writeln!(
        text,
        "exec srun --kill-on-bad-exit=1 --cpus-per-task={} sh -c {} rank {events} {log} {}",
        resources.cpus,
        quote(per_rank),
        words.join(" ")
    );
    text
}

/// `e` with the errors that ranks 1..`tasks` of a data-parallel job reported (in their
/// `events.N` files): rank 0 only sees that a peer left.
fn with_rank_errors(e: StageError, files: &JobFiles, tasks: u32) -> StageError {
    let mut said = Vec::new();
    for rank in 1..tasks {
        let path = PathBuf::from(format!("{}.{rank}", files.events.display()));
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let mut outcome = None;
        for line in text.lines() {
            worker::relay(line, &crate::stages::spec::Silent, &mut outcome);
        }
        if let Some(Err(message)) = outcome {
            said.push(format!("rank {rank}: {message}"));
        }
    }
    if said.is_empty() {
        return e;
    }
    StageError::Failed(format!("{e}\n{}", said.join("\n")))
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Reads the lines a running job appends to its event file.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Tail {
    fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), offset: 0, partial: String::new() }
    }

    /// Relays the complete lines written since the last call.
    fn relay(&mut self, reporter: &dyn Reporter, outcome: &mut Reported) {
        let Ok(mut file) = File::open(&self.path) else { return };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut reader = BufReader::new(file);
        let mut line = std::mem::take(&mut self.partial);
        while let Ok(n) = reader.read_line(&mut line) {
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            if !line.ends_with('\n') {
                break;
            }
            worker::relay(line.trim_end(), reporter, outcome);
            line.clear();
        }
        self.partial = line;
    }
}

/// The jobs of this run that have not ended.
static JOBS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The list of this run's jobs.
struct Jobs;

impl Jobs {
    /// Submits a job and records it; cancels it at once if the run is being interrupted.
    fn submit(args: &[String], script: &Path) -> Result<String, String> {
        let id = job::submit(args, script)?;
        JOBS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(id.clone());
        if interrupt::received().is_some() {
            job::cancel(&id);
        }
        Ok(id)
    }

    fn forget(id: &str) {
        JOBS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|j| j != id);
    }
}

/// Cancels every job of this run (on Ctrl-C).
pub fn cancel_all() {
    for id in JOBS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
        job::cancel(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::spec::Silent;

    #[test]
    fn the_script_runs_the_worker_command_with_the_jobs_threads() {
        let files = JobFiles::new(Path::new("/s/work/k"), Path::new("/s/slurm/1"));
        let resources = Resources { cpus: 2, ..Resources::default() };
        let text = script(&[PathBuf::from("/bin/msnr-worker"), PathBuf::from("/s/it's/spec.json")], &resources, &files);
        assert!(text.contains("export MSNR_THREADS=2\nexport OMP_NUM_THREADS=2\n"), "{text}");
        assert!(
            text.ends_with(
                "exec '/bin/msnr-worker' '/s/it'\\''s/spec.json' >'/s/work/k/events' 2>'/s/work/k/worker.log'\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_data_parallel_job_starts_its_ranks_with_srun() {
        let files = JobFiles::new(Path::new("/s/work/k"), Path::new("/s/slurm/1"));
        let resources = Resources { cpus: 3, tasks: 4, nodes: 2, ..Resources::default() };
        let text = script(&[PathBuf::from("/bin/msnr-worker"), PathBuf::from("/s/spec.json")], &resources, &files);
        assert!(text.contains("export MSNR_THREADS=3\n"), "{text}");
        assert!(text.contains("export MSNR_DDP_PORT=$((20000 + SLURM_JOB_ID % 20000))\n"), "{text}");
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("exec srun --kill-on-bad-exit=1 --cpus-per-task=3 sh -c '"), "{last}");
        assert!(
            last.ends_with("' rank '/s/work/k/events' '/s/work/k/worker.log' '/bin/msnr-worker' '/s/spec.json'"),
            "{last}"
        );
    }

    #[test]
    fn the_errors_of_ranks_past_0_are_added_to_the_stages() {
        let dir = tempfile::tempdir().unwrap();
        let files = JobFiles::new(dir.path(), dir.path());
        std::fs::write(dir.path().join("events.1"), "@msnr {\"log\":\"a\"}\n@msnr {\"error\":\"out of memory\"}\n")
            .unwrap();
        let e = with_rank_errors(StageError::Failed("peer closed".into()), &files, 3);
        assert_eq!(e.to_string(), "peer closed\nrank 1: out of memory");
    }

    #[test]
    fn a_job_ended_by_slurm_is_explained_with_its_state_reason_hint_and_output() {
        let dir = tempfile::tempdir().unwrap();
        let files = JobFiles::new(dir.path(), dir.path());
        std::fs::write(&files.log, "step 40\n").unwrap();
        std::fs::write(dir.path().join("slurm-7.out"), "*** JOB 7 CANCELLED DUE TO TIME LIMIT ***\n").unwrap();
        let job = JobState { state: "TIMEOUT".into(), reason: "TimeLimit".into() };
        let text = ended_message("m", "7", &job, &files);
        assert!(text.starts_with("SLURM job 7 of stage `m` ended TIMEOUT (TimeLimit); raise its `time`"), "{text}");
        assert!(text.contains("worker.log:\nstep 40") && text.contains("slurm-7.out:\n*** JOB 7 CANCELLED"), "{text}");
    }

    #[test]
    fn the_tail_relays_only_complete_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let mut tail = Tail::new(&path);
        let mut outcome = None;
        tail.relay(&Silent, &mut outcome);
        std::fs::write(&path, "@msnr {\"log\":\"a\"}\n@msnr {\"err").unwrap();
        tail.relay(&Silent, &mut outcome);
        assert!(outcome.is_none());
        std::fs::write(&path, "@msnr {\"log\":\"a\"}\n@msnr {\"error\":\"bad\"}\n").unwrap();
        tail.relay(&Silent, &mut outcome);
        assert!(matches!(outcome, Some(Err(StageError::Failed(ref e))) if e == "bad"), "{outcome:?}");
        assert_eq!(tail.offset, std::fs::metadata(&path).unwrap().len());
    }
}
