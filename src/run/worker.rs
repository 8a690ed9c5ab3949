//! The front end's side of the worker protocol: start `msnr-worker` for one
//! torch stage, relay its progress, and turn any way it can end into a result
//! or a clear error. Nothing is cached unless the worker reported success.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

use super::interrupt;
use super::protocol::Event;
use crate::stages::{Reporter, StageError, StageResult, StageSpec};

/// Name of the worker binary, installed beside `msnr`.
pub const WORKER_BIN: &str = "msnr-worker";

/// Where a worker runs: its share of the run's cores and, on CUDA, its GPU (see
/// [`super::budget`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Intra-op threads (`MSNR_THREADS`, which the worker hands to `tch::set_num_threads`,
    /// and `OMP_NUM_THREADS`, `MKL_NUM_THREADS`, `RAYON_NUM_THREADS`); 0 leaves them unset.
    pub threads: usize,
    /// The `CUDA_VISIBLE_DEVICES` value that gives it its GPUs (one, or a data-parallel
    /// `train`'s `devices`: `0,1,2,3`).
    pub gpu: Option<String>,
}

impl Placement {
    /// The environment variables that carry this placement to the worker.
    #[must_use]
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if self.threads > 0 {
            for var in [THREADS_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"] {
                env.push((var, self.threads.to_string()));
            }
        }
        if let Some(gpu) = &self.gpu {
            env.push(("CUDA_VISIBLE_DEVICES", gpu.clone()));
        }
        env
    }
}

/// The variable that gives a worker its intra-op thread count.
pub const THREADS_VAR: &str = "MSNR_THREADS";

/// Runs `spec` in a fresh worker process placed as `placement` says, and waits for it.
///
/// # Errors
/// The stage's own error, or a description of how the worker died (signal,
/// exit code) with the tail of its log (`<work_dir>/worker.log`).
///
/// # Panics
/// Never: specs always serialize and stdout is always piped.
pub fn run(spec: &StageSpec, reporter: &dyn Reporter, placement: &Placement) -> Result<StageResult, StageError> {
    let spec_path = spec.work_dir.join("spec.json");
    let log_path = spec.work_dir.join("worker.log");
    let json = serde_json::to_vec_pretty(spec).expect("specs always serialize");
    std::fs::write(&spec_path, json).map_err(|e| StageError::io(&spec_path, e))?;
    let log = File::create(&log_path).map_err(|e| StageError::io(&log_path, e))?;
    let mut child = worker_command(&spec_path)?
        .envs(placement.env())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| StageError::Failed(format!("cannot start {WORKER_BIN}: {e}")))?;
    let stdout = child.stdout.take().expect("stdout was piped");
    Running::add(child.id());
    let mut outcome = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        relay(&line, reporter, &mut outcome);
    }
    // Out of the list before the wait reaps it: `stop_all` never signals a reused pid.
    Running::remove(child.id());
    let status = child.wait().map_err(|e| StageError::Failed(format!("waiting for {WORKER_BIN}: {e}")))?;
    match outcome {
        Some(Ok(result)) if status.success() => Ok(result),
        Some(Err(e)) => Err(e),
        _ => Err(StageError::Failed(death_message(&spec.name, status, &log_path))),
    }
}

/// The stage's end as its worker reported it: its result, or its own error.
pub type Reported = Option<Result<StageResult, StageError>>;

/// Hands one line of a worker's output to `reporter` (progress, log lines, and stray output
/// as log lines), and records in `outcome` a result or error event.
pub fn relay(line: &str, reporter: &dyn Reporter, outcome: &mut Reported) {
    match Event::parse(line) {
        Some(Event::Progress { done, total, message }) => reporter.progress(done, total, &message),
        Some(Event::Log(text)) => reporter.log(&text),
        Some(Event::Result(r)) => *outcome = Some(Ok(r)),
        Some(Event::Error(e)) => *outcome = Some(Err(StageError::Failed(e))),
        None => reporter.log(line),
    }
}

/// The process ids of the workers started and not yet reaped.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The list of running workers.
struct Running;

impl Running {
    /// Records a started worker; kills it at once if the run is being interrupted
    /// (a signal that came after [`stop_all`] went through the list).
    fn add(pid: u32) {
        RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pid);
        if interrupt::received().is_some() {
            stop_all();
        }
    }

    /// Forgets a worker whose output ended; call before reaping it.
    fn remove(pid: u32) {
        RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|&p| p != pid);
    }
}

/// Kills every running worker (on Ctrl-C); the threads relaying them then see
/// their output end, and reap them. A checkpoint is always whole (it is swapped
/// in by rename), so a killed worker's last checkpoint is where a re-run resumes.
pub fn stop_all() {
    for &pid in RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
        let Ok(pid) = libc::pid_t::try_from(pid) else { continue };
        // SAFETY: plain syscall; the pid is a child not yet reaped (see `Running::remove`).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The worker command: `$MSNR_WORKER`, else `msnr-worker` beside the running
/// executable. The worker dies with its parent (`PR_SET_PDEATHSIG`), so a
/// killed front end leaves no orphan training behind.
fn worker_command(spec_path: &Path) -> Result<Command, StageError> {
    let exe = worker_path()?;
    let mut cmd = Command::new(exe);
    cmd.arg(spec_path);
    // SAFETY: prctl is async-signal-safe; this runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// The worker binary: `$MSNR_WORKER`, else `msnr-worker` beside the running executable.
///
/// # Errors
/// When neither exists.
pub fn worker_path() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os("MSNR_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| StageError::Failed(format!("cannot locate msnr: {e}")))?;
    let path = exe.with_file_name(WORKER_BIN);
    if path.exists() {
        Ok(path)
    } else {
        Err(StageError::Failed(format!(
            "{} not found beside {} (build it with `cargo build --release --bins`)",
            WORKER_BIN,
            exe.display()
        )))
    }
}

/// Explains a worker that ended without reporting: by signal or exit code,
/// with the last lines of its log.
fn death_message(stage: &str, status: ExitStatus, log: &Path) -> String {
    let how = match (status.signal(), status.code()) {
        (Some(9), _) => "was killed by SIGKILL (often the out-of-memory killer)".to_string(),
        (Some(sig), _) => format!("died from signal {sig}"),
        (None, Some(code)) => format!("exited with code {code} without reporting a result"),
        (None, None) => "ended abnormally".to_string(),
    };
    with_log_tail(format!("the worker process for stage `{stage}` {how}"), log)
}

/// `message`, followed by the last lines of the worker's log when it has any.
#[must_use]
pub fn with_log_tail(mut message: String, log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    if !tail.is_empty() {
        let _ = write!(message, "; last lines of {}:\n{}", log.display(), tail.join("\n"));
    }
    message
}
