//! Data-parallel `train` (`devices = 2`, c10d's Gloo on the CPU) through the real binaries:
//! two ranks at 8 examples each end within float tolerance of one process at 16; gradient
//! buckets overlapped with the backward pass give the bits of one all-reduce after it; a killed
//! rank fails the stage, leaves no process and nothing cached, and a re-run resumes; a hung
//! rank fails the stage at the collective timeout and is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::train::{model_dir, msnr, project, stderr};

/// No dropout in the net: its masks are each rank's own draws (as in PyTorch DDP), so only
/// the batch, flips, label drops, timesteps and noise are shared with the one-process run.
fn pipeline(devices: u32, steps: u32) -> String {
    format!(
        "stage digits = mnist {{ count = 64 }}
stage small = crop {{ images = digits, recipe = adm {{}}, size = 16 }}
stage model = train {{
  data = small
  net = unet {{ channels = 32, mults = [1, 2], res_blocks = 1, attention = [8], heads = 2 }}
  target = eps
  weighting = min_snr {{ gamma = 5 }}
  schedule = cosine {{ steps = 100 }}
  optimizer = adamw {{ lr = 1e-3, warmup = 5 }}
  ema = 0.99
  batch = 16
  devices = {devices}
  steps = {steps}
  flip = true
  label_dropout = 0.2
  checkpoint_every = 4
  log_every = 10
}}
"
    )
}

/// Every float32 tensor of a safetensors file, by name.
fn floats(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The `loss` metric in the lockfile.
fn locked_loss(dir: &Path) -> f64 {
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("p.msnr.lock")).expect("lockfile")).expect("json");
    let stage = &lock["stages"]["model"];
    stage["metrics"]["loss"].as_f64().unwrap_or_else(|| panic!("no loss metric in {stage}"))
}

#[test]
fn two_gloo_ranks_at_8_match_one_process_at_16_after_20_steps() {
    let (one, two) = (project(&pipeline(1, 20)), project(&pipeline(2, 20)));
    for dir in [&one, &two] {
        let out = msnr(dir.path()).output().expect("msnr runs");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Float tolerance: the ranks sum the loss and the gradients in another order, so the
    // weights differ by about 1e-8 on average; AdamW divides by the gradient's RMS, so an
    // element whose gradient is ~0 can move by up to a step's size (~lr) differently.
    for file in ["model.safetensors", "ema.safetensors"] {
        let (a, b) = (floats(&model_dir(one.path()).join(file)), floats(&model_dir(two.path()).join(file)));
        assert_eq!(a.len(), b.len());
        let (mut worst, mut sum, mut n) = ((0.0f32, String::new()), 0.0f64, 0usize);
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            for (x, y) in x.iter().zip(y) {
                let d = (x - y).abs();
                (sum, n) = (sum + f64::from(d), n + 1);
                if d > worst.0 {
                    worst = (d, name.clone());
                }
            }
        }
        let mean = sum / f64::from(u32::try_from(n).expect("small net"));
        assert!(mean < 1e-6 && worst.0 < 1e-3, "{file}: mean |diff| {mean:e}, max {} in {}", worst.0, worst.1);
        assert!(worst.0 > 0.0, "{file}: not one bit differs: was the batch split at all?");
    }
    let (l1, l2) = (locked_loss(one.path()), locked_loss(two.path()));
    assert!((l1 - l2).abs() <= 1e-6 * l1.abs(), "logged loss {l1} (1 device) vs {l2} (2 devices)");
    let config = |dir: &Path| std::fs::read_to_string(model_dir(dir).join("config.json")).expect("config");
    assert!(!config(one.path()).contains("\"devices\""), "one device writes the config it wrote before `devices`");
    assert!(config(two.path()).contains("\"devices\""));
    let log = |dir: &Path| std::fs::read_to_string(model_dir(dir).join("log.jsonl")).expect("log");
    assert_eq!(log(one.path()).lines().count(), log(two.path()).lines().count(), "rank 0 alone writes the log");
}

/// Gradient buckets all-reduced during the backward pass (DDP's overlap, the default on CUDA;
/// many small ones at 4 KiB, one at CUDA's 25 MiB default for this small net) give the bits of
/// one all-reduce after it (the CPU's default, `MSNR_DDP_BUCKET_MB=0`): with two ranks each
/// element is the same sum `a + b` however the buffer is cut.
#[test]
fn gradient_buckets_overlapped_with_backward_give_the_bits_of_one_all_reduce() {
    let trained = |bucket_mb: Option<&str>| {
        let dir = project(&pipeline(2, 12));
        let mut cmd = msnr(dir.path());
        if let Some(mb) = bucket_mb {
            cmd.env("MSNR_DDP_BUCKET_MB", mb);
        }
        let out = cmd.output().expect("msnr runs");
        assert!(out.status.success(), "{}", stderr(&out));
        let bytes = |f: &str| std::fs::read(model_dir(dir.path()).join(f)).expect("weights");
        (bytes("model.safetensors"), bytes("ema.safetensors"))
    };
    let after = trained(None);
    assert!(trained(Some("0.004")) == after, "4 KiB buckets differ from one all-reduce after the backward pass");
    assert!(trained(Some("25")) == after, "25 MiB buckets differ from one all-reduce after the backward pass");
}

/// The pid of data-parallel rank `rank` whose command line mentions `dir`.
fn rank_pid(dir: &Path, rank: u32) -> Option<i32> {
    let marker = format!("MSNR_DDP_RANK={rank}");
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).into_owned();
        let has = environ.split(|&b| b == 0).any(|v| v == marker.as_bytes());
        (has && cmdline.contains(&dir)).then_some(pid)
    })
}

/// How many processes have `dir` in their command line (the workers' spec lies under it).
fn processes_of(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    let cmdline = |e: &std::fs::DirEntry| std::fs::read(e.path().join("cmdline")).ok();
    let entries = std::fs::read_dir("/proc").expect("/proc").flatten();
    entries.filter(|e| cmdline(e).is_some_and(|c| String::from_utf8_lossy(&c).contains(&dir))).count()
}

fn checkpointed(dir: &Path) -> bool {
    let work = dir.join(".msnr/work");
    std::fs::read_dir(work).into_iter().flatten().flatten().any(|e| e.path().join("ckpt/state.json").exists())
}

/// Starts a 2-rank run of `steps` steps in `dir` and returns it with rank 1's pid once a
/// checkpoint exists.
fn start_and_find_rank_1(dir: &Path, steps: u32, timeout_s: &str) -> (std::process::Child, i32) {
    std::fs::write(dir.join("p.msnr"), pipeline(2, steps)).expect("pipeline");
    let mut cmd = msnr(dir);
    cmd.env("MSNR_DDP_TIMEOUT", timeout_s).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut run = cmd.spawn().expect("msnr starts");
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint from two ranks appeared");
        assert!(run.try_wait().expect("poll").is_none(), "the run ended before rank 1 was found");
        if checkpointed(dir) {
            if let Some(pid) = rank_pid(dir, 1) {
                return (run, pid);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to `pid`.
fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a pid this test just found running.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[test]
fn a_killed_rank_fails_the_stage_cleanly_and_a_rerun_resumes() {
    let dir = project("");
    let path: PathBuf = dir.path().canonicalize().expect("dir");
    let (run, pid) = start_and_find_rank_1(&path, 60, "600");
    signal(pid, libc::SIGKILL);
    let out = run.wait_with_output().expect("msnr ends");
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("data-parallel rank 1 was killed by signal 9"), "{log}");
    assert_eq!(processes_of(&path), 0, "a rank outlived the stage");
    let store: Vec<_> = std::fs::read_dir(path.join(".msnr/store")).expect("store").collect();
    assert_eq!(store.len(), 2, "only the digits and their crops are cached");

    let again = msnr(&path).output().expect("msnr runs");
    let log = stderr(&again);
    assert!(again.status.success(), "{log}");
    assert!(log.contains("resuming from the checkpoint at step"), "{log}");
    assert!(model_dir(&path).join("model.safetensors").exists());
}

#[test]
fn a_hung_rank_fails_the_stage_at_the_timeout_and_is_killed() {
    let dir = project("");
    let path: PathBuf = dir.path().canonicalize().expect("dir");
    let (run, pid) = start_and_find_rank_1(&path, 400, "5");
    signal(pid, libc::SIGSTOP);
    let out = run.wait_with_output().expect("msnr ends");
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("a collective failed") && log.contains("Timed out"), "{log}");
    assert_eq!(processes_of(&path), 0, "the stopped rank outlived the stage");
}
