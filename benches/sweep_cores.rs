//! Benchmark: a 2-instance sweep of tiny CPU trainings, run by `msnr run` with the
//! default core budget (A) against `--jobs 1` (B), whole processes timed in
//! alternating pairs (A B A B ...; the ratio is taken pair by pair, so drift in the
//! machine's load cancels). Target: A/B <= 1 (the default never slower).
//!
//! `cargo bench --bench sweep_cores` (needs `msnr` and `msnr-worker` built in release:
//! `./msnrw test` or `cargo build --release --workspace --bins`). Each run starts from
//! a fresh project (the 100 bundled digits imported, then both trainings), so nothing
//! is cached.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Timed pairs (`PAIRS=n` in the environment changes it).
const PAIRS: usize = 5;

const PIPELINE: &str = "stage digits = images { path = \"digits\", channels = 1 }
sweep g in [1, 5] {
  stage model = train {
    data = digits
    net = unet { channels = 32, mults = [1, 2], res_blocks = 1, attention = [14], heads = 2 }
    weighting = min_snr { gamma = g }
    batch = 16
    steps = 20
    log_every = 10
    checkpoint_every = 20
  }
}
";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let msnr = root.join("target/release/msnr");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("2 tiny trainings (UNet 32 ch, batch 16, 20 steps, CPU) on {cores} cores: default vs --jobs 1");
    let pairs = std::env::var("PAIRS").ok().and_then(|p| p.parse().ok()).filter(|&p| p > 0).unwrap_or(PAIRS);
    run(&msnr, &[]); // warm-up: page in libtorch
    let mut ratios = Vec::new();
    for pair in 0..pairs {
        let a = run(&msnr, &[]);
        let b = run(&msnr, &["--jobs", "1"]);
        println!("pair {pair}: default {a:.2} s, --jobs 1 {b:.2} s, ratio {:.3}", a / b);
        ratios.push(a / b);
    }
    ratios.sort_by(f64::total_cmp);
    let (min, median, max) = (ratios[0], ratios[pairs / 2], ratios[pairs - 1]);
    println!("default / --jobs 1: median {median:.3} (min {min:.3}, max {max:.3}; target <= 1)");
}

/// Runs the sweep in a fresh project with `extra` arguments; returns the wall seconds.
fn run(msnr: &Path, extra: &[&str]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path();
    std::fs::create_dir(project.join(".msnr")).expect("store dir");
    copy_digits(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits"), &project.join("digits"));
    std::fs::write(project.join("p.msnr"), PIPELINE).expect("pipeline");
    let start = Instant::now();
    let out = Command::new(msnr)
        .args(["run", "p.msnr"])
        .args(extra)
        .current_dir(project)
        .env("MSNR_PLAIN", "1")
        .env("MSNR_DEVICE", "cpu")
        .env_remove("OMP_NUM_THREADS")
        .output()
        .expect("msnr runs");
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "msnr run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    secs
}

/// Copies the bundled digits (one folder per class).
fn copy_digits(from: &Path, to: &Path) {
    for class in std::fs::read_dir(from).expect("examples/digits") {
        let class = class.expect("entry").path();
        if !class.is_dir() {
            continue; // the script that made them
        }
        let dest = to.join(class.file_name().expect("name"));
        std::fs::create_dir_all(&dest).expect("class folder");
        for file in std::fs::read_dir(&class).expect("class") {
            let file = file.expect("entry").path();
            std::fs::copy(&file, dest.join(file.file_name().expect("name"))).expect("copy");
        }
    }
}
