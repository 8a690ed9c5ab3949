//! `msnr run --executor slurm` on a real SLURM cluster: the cluster that
//! `tests/setup/slurm.sh` starts on this machine (Debian's `slurm-wlm` and `munge`;
//! `.ci/run` runs it): partition `debug`, this machine as one node, and partition `multi`,
//! two one-CPU nodes (two slurmd on this machine) for data-parallel ranks on two nodes. Each stale stage is an `sbatch` job, its readers queued ahead as
//! held jobs depending on it; the lockfile must be the one a local run writes, and a job killed by `scancel` must fail its stage with SLURM's
//! state, store nothing, and leave a checkpoint the re-run resumes from.
//!
//! Skipped, saying so, where no cluster answers; in CI (`CI` set) that fails instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{wait_at_most, wait_for, Project};

/// Data stages (in process locally, `msnr worker` in a job) feeding a tiny training.
const PIPELINE: &str = "stage d = mnist { count = 40 }\n\
    stage c = crop { images = d, recipe = adm {}, size = 14 }\n\
    stage m = train { data = c, net = unet { channels = 32, mults = [1], attention = [] }, steps = 4, batch = 2 }\n";

/// Says on the real stderr (the harness does not capture it) that the test did not run.
fn skipped(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED the SLURM test: {why}");
}

/// Whether a SLURM cluster with an idle node answers here; in CI its absence fails the test.
fn cluster() -> bool {
    let states = Command::new("sinfo").args(["-h", "-o", "%t"]).output();
    let up = states.as_ref().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).lines().any(|s| ["idle", "mix", "alloc"].contains(&s.trim()))
    });
    let has_sbatch = Command::new("sbatch").arg("--version").output().is_ok_and(|o| o.status.success());
    if up && has_sbatch {
        return true;
    }
    let why = match states {
        Err(_) => "no sinfo on PATH (start a one-node cluster: sudo bash tests/setup/slurm.sh)".to_string(),
        Ok(o) => format!(
            "no idle SLURM node (sinfo: {:?}; start one: sudo bash tests/setup/slurm.sh)",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
    };
    assert!(std::env::var_os("CI").is_none(), "no SLURM cluster in CI: {why}");
    skipped(&why);
    false
}

/// Whether a cluster answers and this machine has a core for each of two ranks (else says
/// why the test is skipped).
fn cluster_for_two_ranks() -> bool {
    if !cluster() {
        return false;
    }
    if cpus() < 2 {
        skipped("two ranks need two cores");
        return false;
    }
    true
}

/// Cores each job asks for: 2, or 1 on a one-core machine. The local run gets as many, so
/// the training's thread count, hence its output, is the same.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).min(2)
}

fn config(extra: &str) -> String {
    format!("{extra}[slurm]\npoll = 0.2\n[slurm.default]\ncpus = {}\n", cpus())
}

/// Per stage of the lockfile: its key and output hash.
fn keys_and_outputs(p: &Project) -> BTreeMap<String, (Value, Value)> {
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(p.path("p.msnr.lock")).unwrap()).unwrap();
    let stages = lock["stages"].as_object().unwrap();
    stages.iter().map(|(name, e)| (name.clone(), (e["key"].clone(), e["output"].clone()))).collect()
}

/// The job id printed after `prefix` in `text`.
fn job_after(text: &str, prefix: &str) -> String {
    let rest = text.split(prefix).nth(1).unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    rest.chars().take_while(char::is_ascii_digit).collect()
}

#[test]
fn stages_run_as_slurm_jobs_and_record_the_lockfile_of_a_local_run() {
    if !cluster() {
        return;
    }
    let local = Project::new();
    local.write("p.msnr", PIPELINE);
    local.msnr(&["run", "p.msnr", "--cores", &cpus().to_string()]).success();
    let p = Project::new();
    p.write("p.msnr", PIPELINE).write("msnr.toml", &config(""));
    let run = p.msnr(&["run", "p.msnr", "--executor", "slurm"]);
    run.success().stderr_has("3 ran, 0 cached").stderr_has("msnr: d: 40/40").stderr_has("msnr: m: 4/4");
    // `d` is submitted; `c` and `m` are queued at once, held, each after its input's job.
    let stderr = run.stderr();
    let d = job_after(&stderr, "msnr: d: submitted as SLURM job ");
    let c = job_after(&stderr, "queued `c` as held SLURM job ");
    let m = job_after(&stderr, "queued `m` as held SLURM job ");
    assert!(stderr.contains(&format!("job {c} (afterok:{d})")) && stderr.contains(&format!("job {m} (afterok:{c})")));
    assert!(
        stderr.contains(&format!("c: released SLURM job {c}"))
            && stderr.contains(&format!("m: released SLURM job {m}"))
    );
    assert_eq!(stderr.matches("submitted as SLURM job").count(), 1, "{stderr}");
    assert_eq!(keys_and_outputs(&p), keys_and_outputs(&local), "the same keys and outputs as the local run");
    assert_eq!(p.tmp_entries(), 0);
    let again = p.msnr(&["run", "p.msnr", "--executor", "slurm"]);
    again.success().stderr_has("0 ran, 3 cached");
    assert!(!again.stderr().contains("submitted"), "{}", again.stderr());
}

/// A stand-in for `msnr-worker` (through `MSNR_WORKER`) that runs the real one and freezes
/// it (SIGSTOP) once it has written a checkpoint, leaving `paused` in the work folder: the
/// job is then cancelled mid-training however fast the machine trains.
fn pausing_worker(p: &Project) -> PathBuf {
    let real = std::path::Path::new(env!("CARGO_BIN_EXE_msnr")).with_file_name("msnr-worker");
    let script = format!(
        "#!/bin/sh\n'{}' \"$@\" &\npid=$!\nwork=$(dirname \"$1\")\n\
         while [ ! -f \"$work/ckpt/state.json\" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done\n\
         kill -STOP $pid\ntouch \"$work/paused\"\nwait $pid\n",
        real.display()
    );
    let path = p.path("pausing-worker.sh");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// The work folder of the paused training and its latest SLURM job id (from the `job` file
/// msnr writes there).
fn paused_job(p: &Project) -> Option<(PathBuf, String)> {
    let work = std::fs::read_dir(p.path(".msnr/work")).ok()?;
    let dir = work.filter_map(Result::ok).map(|e| e.path()).find(|d| d.join("paused").exists())?;
    let id = std::fs::read_to_string(dir.join("job")).ok()?.trim().to_string();
    Some((dir, id))
}

#[test]
fn a_job_killed_by_scancel_fails_its_stage_with_the_reason_and_the_rerun_resumes() {
    if !cluster() {
        return;
    }
    let p = Project::new();
    let long = "stage m = train { data = c, net = unet { channels = 32, mults = [1], attention = [] }, steps = 6, batch = 2, checkpoint_every = 2 }";
    let pipeline = PIPELINE.replace(PIPELINE.lines().nth(2).unwrap(), long);
    // The executor comes from the committed msnr.toml: no --executor.
    p.write("p.msnr", &pipeline).write("msnr.toml", &config("[executor]\nkind = \"slurm\"\n"));
    let mut run = p.cmd(&["run", "p.msnr"]);
    let mut child =
        run.env("MSNR_WORKER", pausing_worker(&p)).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the training job to checkpoint", Duration::from_secs(60), || paused_job(&p).is_some());
    let (work, id) = paused_job(&p).unwrap();
    assert!(Command::new("scancel").arg(&id).status().unwrap().success());
    let status = wait_at_most(&mut child, Duration::from_secs(30));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "{stderr}");
    let reason = format!("msnr: m: FAILED: SLURM job {id} of stage `m` ended CANCELLED");
    assert!(stderr.contains(&reason), "{stderr}");
    assert!(stderr.contains("2 ran, 0 cached, 1 failed"), "{stderr}");
    assert_eq!(p.store_entries().len(), 2, "nothing of the cancelled training is stored");
    assert_eq!(p.tmp_entries(), 0);
    assert!(work.join("ckpt/state.json").exists(), "its checkpoint stays for the re-run");
    // A run killed outright leaves its job running (here frozen); the next run cancels the
    // jobs of killed runs first, so two jobs never write one work folder.
    std::fs::remove_file(work.join("paused")).unwrap();
    let mut run = p.cmd(&["run", "p.msnr"]);
    let mut child =
        run.env("MSNR_WORKER", pausing_worker(&p)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the resumed job to pause", Duration::from_secs(60), || paused_job(&p).is_some_and(|(_, j)| j != id));
    let (_, left) = paused_job(&p).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let again = p.msnr(&["run", "p.msnr"]);
    again
        .success()
        .stderr_has("msnr: cancelled 1 SLURM job(s) that a killed run left")
        .stderr_has("msnr: m: resuming from the checkpoint at step ")
        .stderr_has("1 ran, 2 cached");
    assert_eq!(p.store_entries().len(), 3);
    assert_eq!(p.tmp_entries(), 0, "the killed run's staging folder was removed");
    let left_state = Command::new("squeue").args(["-h", "-t", "all", "-o", "%T", "-j", &left]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&left_state.stdout).trim(), "CANCELLED");
    let runs = std::fs::read_dir(p.path(".msnr/slurm")).map_or(0, Iterator::count);
    assert_eq!(runs, 0, "no run folder is left");
}

/// `PIPELINE` with a data-parallel training: two ranks of 2 examples each.
fn data_parallel() -> String {
    PIPELINE.replace("steps = 4, batch = 2 }", "steps = 4, batch = 4, devices = 2 }")
}

/// Runs [`data_parallel`] locally (rank 0 starting rank 1, a core each) and through SLURM with
/// `train_toml` in msnr.toml; checks that both record the same keys and outputs; returns
/// `scontrol show job` of the training's job.
fn data_parallel_job_matching_the_local_run(train_toml: &str) -> String {
    let local = Project::new();
    local.write("p.msnr", &data_parallel());
    local.msnr(&["run", "p.msnr", "--cores", "2"]).success();
    let p = Project::new();
    p.write("p.msnr", &data_parallel()).write("msnr.toml", &config(train_toml));
    let run = p.msnr(&["run", "p.msnr", "--executor", "slurm"]);
    run.success().stderr_has("3 ran, 0 cached");
    assert_eq!(keys_and_outputs(&p), keys_and_outputs(&local), "the same keys and outputs as the local run");
    let m = job_after(&run.stderr(), "queued `m` as held SLURM job ");
    let job = Command::new("scontrol").args(["show", "job", &m]).output().unwrap();
    String::from_utf8_lossy(&job.stdout).into_owned()
}

/// A data-parallel `train` spread over the two nodes of partition `multi` (`nodes = 2`): one
/// task on each, started by `srun`, rank 1 reaching rank 0's store at the first node's
/// `NodeAddr`; the lockfile is the local run's.
#[test]
fn a_data_parallel_train_spreads_its_ranks_over_two_nodes_and_matches_the_local_run() {
    if !cluster() {
        return;
    }
    let multi = Command::new("sinfo").args(["-h", "-p", "multi", "-o", "%D %t"]).output();
    let multi = multi.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    if multi != "2 idle" {
        let why =
            format!("partition `multi` is not two idle nodes (sinfo: {multi:?}; run sudo bash tests/setup/slurm.sh)");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        skipped(&why);
        return;
    }
    let job = data_parallel_job_matching_the_local_run(
        "[slurm.stage.train]\npartition = \"multi\"\nnodes = 2\ncpus = 1\nmem = \"1G\"\n",
    );
    assert!(job.contains("NodeList=msnr-n[1-2]") && job.contains("NumNodes=2 NumCPUs=2 NumTasks=2"), "{job}");
}

/// A data-parallel `train` (`devices = 2`) is one job of two tasks, its ranks started by
/// `srun` and meeting at the store on rank 0's node (from `SLURM_JOB_NODELIST`): the lockfile
/// is that of the same pipeline run locally, where rank 0 starts rank 1 itself. On this
/// one-node cluster the two tasks share the node; `nodes` in msnr.toml spreads them.
#[test]
fn a_data_parallel_train_runs_its_ranks_as_srun_tasks_and_matches_the_local_run() {
    if !cluster_for_two_ranks() {
        return;
    }
    // One core per rank, as the local run's rank 0 splits its two.
    let job = data_parallel_job_matching_the_local_run("[slurm.stage.train]\ncpus = 1\n");
    assert!(job.contains("NumNodes=1 NumCPUs=2 NumTasks=2 CPUs/Task=1"), "one task per rank:\n{job}");
}

/// A rank of a data-parallel job that fails: srun ends the job (`--kill-on-bad-exit`), the
/// stage fails with that rank's own message beside rank 0's, and nothing is stored.
#[test]
fn a_failed_srun_rank_fails_the_stage_with_its_message() {
    if !cluster_for_two_ranks() {
        return;
    }
    let p = Project::new();
    let real = std::path::Path::new(env!("CARGO_BIN_EXE_msnr")).with_file_name("msnr-worker");
    // Rank 1 reports an error the way a worker does, and exits; rank 0 is the real worker.
    let script = format!(
        "#!/bin/sh\nif [ \"$SLURM_PROCID\" = 1 ]; then\n  echo '@msnr {{\"error\":\"rank 1 ran out of memory\"}}'\n  exit 1\nfi\nexec '{}' \"$@\"\n",
        real.display()
    );
    p.write("failing-worker.sh", &script);
    std::fs::set_permissions(p.path("failing-worker.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.write("p.msnr", &data_parallel()).write("msnr.toml", &config("[slurm.stage.train]\ncpus = 1\n"));
    let run = p
        .cmd(&["run", "p.msnr", "--executor", "slurm"])
        .env("MSNR_WORKER", p.path("failing-worker.sh"))
        .env("MSNR_DDP_TIMEOUT", "20")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("msnr: m: FAILED") && stderr.contains("rank 1: rank 1 ran out of memory"), "{stderr}");
    assert!(stderr.contains("2 ran, 0 cached, 1 failed"), "{stderr}");
    assert_eq!(p.store_entries().len(), 2, "nothing of the failed training is stored");
    assert_eq!(p.tmp_entries(), 0);
}

/// `msnr plan --executor slurm` (no cluster needed): each stage that will run with the
/// `sbatch` resources its job would ask for, or why it would be refused.
#[test]
fn plan_shows_each_stale_stages_slurm_job() {
    let p = Project::new();
    p.write("p.msnr", &data_parallel()).write("msnr.toml", "[slurm.stage.train]\nnodes = 2\ncpus = 3\n");
    let out = p.msnr(&["plan", "p.msnr", "--executor", "slurm"]).success().stdout();
    let row = |name: &str| out.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string();
    assert!(out.lines().next().unwrap().contains("SLURM JOB"), "{out}");
    assert!(row("d").contains("--cpus-per-task=1"), "{out}");
    assert!(row("m").contains("--cpus-per-task=3 --nodes=2 --ntasks-per-node=1"), "{out}");
    p.write("msnr.toml", "[executor]\nkind = \"slurm\"\n[slurm.stage.train]\nnodes = 3\n");
    p.msnr(&["plan", "p.msnr"]).success().stdout_has("refused: devices = 2 cannot be spread evenly over nodes = 3");
    let local = p.msnr(&["plan", "p.msnr", "--executor", "local"]).success().stdout();
    assert!(!local.contains("SLURM JOB"), "{local}");
}
