//! Benchmark (issue 14, datasets larger than the device): the `train` stage on CPU with the
//! resident and the streaming loader, each in a process of its own: steady-state steps/s of a
//! small ADM UNet on a dataset of 32x32 RGB items written to disk, and the memory each holds
//! (the bytes of data the loader keeps; from `/proc/self/status`, the process's peak resident
//! set `VmHWM` and the largest anonymous and file-backed resident memory, `RssAnon` and
//! `RssFile`, seen at a progress report while training; the shards' mapped pages count in
//! `RssFile`, and the kernel may drop them when memory runs short). The two runs
//! train the same model: the bench checks that their outputs' tree hashes are equal.
//!
//! `cargo bench -p msnr-torch --bench train_stream` (`ITEMS`, `STEPS`: dataset size and steps
//! per run; 20000 and 60 by default).

// Counts and sizes printed as floats, and the synthetic items' bytes.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use msnr::data::{DType, DatasetWriter};
use msnr::lang::Value;
use msnr::stages::train::LoaderChoice;
use msnr::stages::{Reporter, StageSpec};
use msnr_torch::stages::train::loader::{Run, TrainLoader};
use tch::Device;

const BATCH: i64 = 32;
const LOG_EVERY: u64 = 10;

fn main() {
    msnr::malloc::tune(); // as msnr-worker does
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(&args[pos + 1], Path::new(&args[pos + 2]), Path::new(&args[pos + 3]));
        return;
    }
    let items = env_usize("ITEMS", 20_000);
    let steps = env_usize("STEPS", 60);
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    write_dataset(&data, items);
    println!(
        "train on CPU ({} threads), ADM UNet 32x32x3 (32 ch, mults 1,2, no attention), batch {BATCH}, {steps} steps; \
         dataset of {items} uint8 items ({:.1} MiB) in shards of 1000",
        tch::get_num_threads(),
        mib((items * 3 * 32 * 32) as u64)
    );
    println!(
        "| loader | steps/s (after step {LOG_EVERY}) | data the loader holds | peak RSS (VmHWM) \
         | RssAnon while training | RssFile while training |"
    );
    println!("|---|---|---|---|---|---|");
    let mut hashes = Vec::new();
    for mode in ["resident", "stream"] {
        let out = root.path().join(mode);
        let exe = std::env::current_exe().expect("bench executable");
        let status = Command::new(exe)
            .args(["--child", mode, &data.to_string_lossy(), &out.to_string_lossy()])
            .env("STEPS", steps.to_string())
            .status()
            .expect("child runs");
        assert!(status.success(), "the {mode} run failed");
        hashes.push(msnr::cache::hash_tree(&out.join("out")).expect("output hash"));
    }
    assert_eq!(hashes[0], hashes[1], "the loaders trained different models");
    println!("same output tree hash in both modes: {}", &hashes[0][..12]);
}

/// One run in this process: trains, then prints its table row.
fn child(mode: &str, data: &Path, root: &Path) {
    let steps = env_usize("STEPS", 60) as u64;
    let loader = if mode == "stream" { ", loader = stream { prefetch = 4 }" } else { ", loader = resident" };
    let (out, work) = (root.join("out"), root.join("work"));
    std::fs::create_dir_all(&out).expect("out");
    std::fs::create_dir_all(&work).expect("work");
    let spec = StageSpec::standalone("train", params(data, steps, loader), &out, &work);
    let times = Times::default();
    msnr_torch::stages::train::run(&spec, &times).expect("training runs");
    let hwm = status_kib("VmHWM");
    let (anon, file) = *times.1.lock().expect("memory");
    let choice = if mode == "stream" { LoaderChoice::Stream { prefetch: 4 } } else { LoaderChoice::Resident };
    let run = Run { device: Device::Cpu, batch: BATCH, end: steps };
    let held = TrainLoader::open(data, choice, run, &msnr::stages::spec::Silent).expect("opens").held_bytes();
    let rate = times.rate();
    println!(
        "| {mode} | {rate:.2} | {:.2} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(held as u64),
        hwm as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
}

/// The train stage's parameters as the language fills them.
fn params(data: &Path, steps: u64, loader: &str) -> std::collections::BTreeMap<String, Value> {
    let text = format!(
        "stage d = mnist {{ count = 10 }}\n\
         stage m = train {{ data = d, net = unet {{ channels = 32, mults = [1, 2], res_blocks = 1, attention = [], heads = 2 }}, \
         batch = {BATCH}, steps = {steps}, log_every = {LOG_EVERY}, checkpoint_every = 100000{loader} }}\n"
    );
    let pipeline = msnr::lang::load_str("bench.msnr", &text, &[]).expect("pipeline");
    let mut params = pipeline.stages.iter().find(|s| s.name == "m").expect("stage").params.clone();
    params.insert("data".into(), Value::Path(PathBuf::from(data)));
    params
}

/// `items` 3x32x32 items of two classes with varied bytes.
fn write_dataset(dir: &Path, items: usize) {
    let classes = vec!["a".into(), "b".into()];
    let mut w = DatasetWriter::create(dir, [3, 32, 32], DType::U8, classes).expect("writer").with_shard_items(1000);
    let mut item = vec![0u8; 3 * 32 * 32];
    for i in 0..items {
        for (j, b) in item.iter_mut().enumerate() {
            *b = ((i * 131 + j * 17) % 251) as u8;
        }
        w.push(&item, (i % 2) as i64).expect("push");
    }
    w.finish().expect("finish");
}

/// When each progress report came, for the steady-state rate, and the largest anonymous and
/// file-backed resident memory seen at a report (KiB).
#[derive(Default)]
struct Times(Mutex<Vec<(u64, Instant)>>, Mutex<(u64, u64)>);

impl Times {
    /// Steps per second between the first and the last progress report.
    fn rate(&self) -> f64 {
        let t = self.0.lock().expect("times");
        let ((a, ta), (b, tb)) = (t[0], t[t.len() - 1]);
        (b - a) as f64 / (tb - ta).as_secs_f64()
    }
}

impl Reporter for Times {
    fn progress(&self, done: u64, _: u64, _: &str) {
        self.0.lock().expect("times").push((done, Instant::now()));
        let mut peak = self.1.lock().expect("memory");
        *peak = (peak.0.max(status_kib("RssAnon")), peak.1.max(status_kib("RssFile")));
    }
    fn log(&self, _: &str) {}
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = text.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
