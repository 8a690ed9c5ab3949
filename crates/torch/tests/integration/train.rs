//! The train stage end to end through the real `msnr` and `msnr-worker`
//! binaries: a run produces a model artifact; a run killed mid-training
//! resumes from its last checkpoint and ends with bitwise the same weights as
//! an uninterrupted run; a diverging run stops with the step and the last
//! finite loss and caches nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/<name>`, built by `cargo build --workspace --bins` (`./msnrw test` does it).
pub(crate) fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe.parent().and_then(Path::parent).expect("target/<profile>").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --release --workspace --bins` first", path.display());
    path
}

pub(crate) fn project(pipeline: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join(".msnr")).expect("store");
    std::fs::write(dir.path().join("p.msnr"), pipeline).expect("pipeline");
    dir
}

pub(crate) fn msnr(dir: &Path) -> Command {
    msnr_verb(dir, "run")
}

pub(crate) fn msnr_verb(dir: &Path, verb: &str) -> Command {
    let _ = bin("msnr-worker");
    let mut cmd = Command::new(bin("msnr"));
    cmd.args([verb, "p.msnr"])
        .current_dir(dir)
        .env("MSNR_PLAIN", "1")
        .env("MSNR_DEVICE", "cpu")
        .env_remove("MSNR_HOME");
    cmd
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const PIPELINE: &str = "stage digits = mnist { count = 64 }
stage small = crop { images = digits, recipe = adm {}, size = 16 }
stage model = train {
  data = small
  net = unet { channels = 32, mults = [1, 2], res_blocks = 1, attention = [8], heads = 2, dropout = 0.1 }
  target = v
  weighting = min_snr { gamma = 5 }
  schedule = cosine { steps = 100 }
  optimizer = adamw { lr = 1e-3, warmup = 5 }
  ema = 0.99
  batch = 4
  steps = 12
  flip = true
  label_dropout = 0.2
  checkpoint_every = 4
  log_every = 4
}
";

/// The single store entry of kind `train`: its output folder.
pub(crate) fn model_dir(dir: &Path) -> PathBuf {
    let store = dir.join(".msnr/store");
    for entry in std::fs::read_dir(&store).expect("store") {
        let out = entry.expect("entry").path().join("out");
        if out.join("model.safetensors").exists() {
            return out;
        }
    }
    panic!("no model in {}", store.display());
}

/// Every tensor of a safetensors file, by name, as raw bytes.
fn tensors(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).expect("weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect()
}

#[test]
fn training_writes_a_model_artifact_with_log_and_metrics() {
    let dir = project(PIPELINE);
    let out = msnr(dir.path()).output().expect("msnr runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let model = model_dir(dir.path());
    let raw = tensors(&model.join("model.safetensors"));
    let ema = tensors(&model.join("ema.safetensors"));
    assert_eq!(raw.keys().collect::<Vec<_>>(), ema.keys().collect::<Vec<_>>(), "EMA weights load into the same net");
    assert!(raw.keys().any(|k| k.starts_with("input_blocks.")), "ADM parameter names");
    assert_ne!(raw, ema, "EMA differs from the raw weights");
    let log = std::fs::read_to_string(model.join("log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 3, "a record every 4 of 12 steps:\n{log}");
    assert!(log.contains("\"mse_by_t\""));
    let config = std::fs::read_to_string(model.join("config.json")).expect("config");
    assert!(config.contains("\"num_classes\": 10"), "{config}");
    let lock = std::fs::read_to_string(dir.path().join("p.msnr.lock")).expect("lockfile");
    assert!(lock.contains("\"loss\"") && lock.contains("\"libtorch\""), "{lock}");
    let verify = msnr_verb(dir.path(), "verify").output().expect("msnr verify runs");
    let table = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && table.contains("model   reproduced"), "{table}\n{}", stderr(&verify));
}

#[test]
fn killed_training_resumes_to_bitwise_identical_outputs() {
    // Checkpoints between log records (every 3 steps, records every 4), so the log's sums
    // since its last record must travel in the checkpoint too.
    let pipeline = PIPELINE.replace("checkpoint_every = 4", "checkpoint_every = 3");
    let whole = project(&pipeline);
    let out = msnr(whole.path()).output().expect("msnr runs");
    assert!(out.status.success(), "{}", stderr(&out));

    let killed = project(&pipeline);
    let mut child = msnr(killed.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("msnr starts");
    let work = killed.path().join(".msnr/work");
    let start = Instant::now();
    let checkpointed =
        || std::fs::read_dir(&work).into_iter().flatten().flatten().any(|e| e.path().join("ckpt/state.json").exists());
    while !checkpointed() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().expect("poll").is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let again = msnr(killed.path()).output().expect("msnr runs");
    let log = stderr(&again);
    assert!(again.status.success(), "{log}");
    assert!(log.contains("resuming from the checkpoint at step"), "{log}");

    for file in ["model.safetensors", "ema.safetensors"] {
        let (a, b) = (tensors(&model_dir(whole.path()).join(file)), tensors(&model_dir(killed.path()).join(file)));
        assert!(a == b, "{file}: resumed weights differ from the uninterrupted run");
    }
    // Every output file, the log included, byte for byte (so `msnr verify` agrees too).
    for file in ["model.safetensors", "ema.safetensors", "config.json", "log.jsonl"] {
        let read = |dir: &Path| std::fs::read(model_dir(dir).join(file)).expect("output file");
        assert!(read(whole.path()) == read(killed.path()), "{file} differs after the resume");
    }
}

#[test]
fn a_diverging_loss_stops_naming_the_step_and_caches_nothing() {
    let pipeline = PIPELINE.replace("adamw { lr = 1e-3, warmup = 5 }", "adamw { lr = 1e30 }\n  grad_clip = 0");
    let dir = project(&pipeline);
    let out = msnr(dir.path()).output().expect("msnr runs");
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("at step") && log.contains("last finite loss"), "{log}");
    let store: Vec<_> = std::fs::read_dir(dir.path().join(".msnr/store")).expect("store").collect();
    assert_eq!(store.len(), 2, "only the digits and their crops are cached");
}

#[test]
fn cuda_forced_without_a_gpu_fails_clearly_without_a_panic() {
    if tch::Cuda::is_available() {
        return; // the GPU check (benches/gpu_check.sh) covers CUDA training
    }
    let dir = project(&PIPELINE.replace("steps = 12", "steps = 5"));
    let out = msnr(dir.path()).env("MSNR_DEVICE", "cuda").output().expect("msnr runs");
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("device is cuda, but libtorch finds no usable CUDA device"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
