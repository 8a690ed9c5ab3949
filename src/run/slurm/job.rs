//! The SLURM commands msnr uses: `sbatch` to submit, `squeue` (then `sacct`, once the
//! controller has forgotten a job) to follow one, `scancel` to stop one, and the job
//! states they report.

use std::path::Path;
use std::process::Command;

/// A job's state and SLURM's reason for it, as `squeue` or `sacct` print them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `CANCELLED`, `TIMEOUT`, ...
    pub state: String,
    /// SLURM's reason (`None`, `Priority`, `Resources`, `NonZeroExitCode`, ...).
    pub reason: String,
}

/// The states a job never leaves.
const ENDED: [&str; 10] = [
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
];

impl JobState {
    /// Parses `STATE|REASON` (`sacct` writes `CANCELLED by 1000`: the first word is the state).
    #[must_use]
    pub fn parse(line: &str) -> Option<Self> {
        let (state, reason) = line.trim().split_once('|')?;
        let state = state.split_whitespace().next()?.trim_end_matches('+').to_string();
        Some(Self { state, reason: reason.trim().to_string() })
    }

    /// The job has ended, whichever way.
    #[must_use]
    pub fn ended(&self) -> bool {
        ENDED.contains(&self.state.as_str())
    }

    /// The state with its reason, as messages show it: `CANCELLED`, `FAILED (NonZeroExitCode)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self.reason.as_str() {
            "" | "None" | "(null)" => self.state.clone(),
            reason => format!("{} ({reason})", self.state),
        }
    }
}

/// Submits `script` with `args`; returns the job id.
///
/// # Errors
/// `sbatch` missing, or refusing the job (its message).
pub fn submit(args: &[String], script: &Path) -> Result<String, String> {
    let out = run(Command::new("sbatch").arg("--parsable").args(args).arg(script))?;
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = out.split(';').next().unwrap_or_default().trim().to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(format!("sbatch printed no job id: {out:?}"));
    }
    Ok(id)
}

/// The job's state: from `squeue` while the controller knows the job, else from `sacct`.
///
/// # Errors
/// When neither knows it (or cannot be run).
pub fn query(id: &str) -> Result<JobState, String> {
    let squeue = run(Command::new("squeue").args(["-h", "-t", "all", "-o", "%T|%r", "-j", id]));
    if let Some(state) = squeue.as_ref().ok().and_then(|out| out.lines().find_map(JobState::parse)) {
        return Ok(state);
    }
    let sacct = run(Command::new("sacct").args(["-X", "-n", "-P", "-o", "State,Reason", "-j", id]));
    match sacct {
        Ok(out) => out.lines().find_map(JobState::parse).ok_or_else(|| format!("SLURM does not know job {id}")),
        Err(e) => Err(format!("SLURM does not know job {id}: {}; {e}", squeue.err().unwrap_or_default())),
    }
}

/// Lets a held job run: clears its dependencies (its inputs are stored, whatever became of
/// their jobs) and releases it.
///
/// # Errors
/// `scontrol` refusing either (its message).
pub fn release(id: &str) -> Result<(), String> {
    run(Command::new("scontrol").args(["update", &format!("JobId={id}"), "Dependency="]))?;
    run(Command::new("scontrol").args(["release", id])).map(drop)
}

/// Cancels the job (`scancel`); a job that already ended is no error.
pub fn cancel(id: &str) {
    let _ = run(Command::new("scancel").arg(id));
}

/// Whether `sbatch` and `squeue` can be run here.
#[must_use]
pub fn available() -> bool {
    ["sbatch", "squeue"].iter().all(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// Runs `cmd`, returning its stdout, or its stderr as the error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| format!("cannot run `{name}` (is SLURM installed here?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{name}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines_parse_into_states() {
        let s = JobState::parse("RUNNING|None\n").unwrap();
        assert!(!s.ended());
        assert_eq!(s.describe(), "RUNNING");
        let s = JobState::parse("CANCELLED by 0|None").unwrap();
        assert!(s.ended());
        assert_eq!(s.describe(), "CANCELLED");
        let s = JobState::parse("FAILED|NonZeroExitCode").unwrap();
        assert_eq!(s.describe(), "FAILED (NonZeroExitCode)");
        assert!(JobState::parse("TIMEOUT|TimeLimit").unwrap().ended());
        assert!(!JobState::parse("PENDING|Dependency").unwrap().ended());
        assert!(!JobState::parse("COMPLETING|None").unwrap().ended());
        assert_eq!(JobState::parse("garbage"), None);
    }
}
