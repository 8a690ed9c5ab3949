//! Benchmark: FID Inception features of 64 images (32x32 uint8, resized to 299 as
//! pytorch-fid does) on the CPU, msnr (tch, `FidInceptionV3::features`) against pytorch-fid's
//! `InceptionV3` in PyTorch eager (`benches/inception_cpu_ref.py`), in the same run on the
//! same threads, both with the parity tests' formula weights. Target: ratio >= 1.0.
//!
//! `cargo bench -p msnr-torch --bench inception_cpu` with `$MSNR_FID_PYTHON` (or
//! `$MSNR_PYTHON`) a Python that has torch and pytorch-fid.

use std::process::Command;
use std::time::Instant;

use msnr_torch::diffusion::models::inception::FidInceptionV3;
use tch::nn::VarStore;
use tch::{Device, Kind};

#[path = "../tests/integration/fid/formula.rs"]
mod formula;

const IMAGES: i64 = 64;
const SIDE: i64 = 32;
const ROUNDS: usize = 3;

fn main() {
    msnr::malloc::tune(); // as msnr-worker does
    let threads = tch::get_num_threads();
    let vs = VarStore::new(Device::Cpu);
    let net = FidInceptionV3::new(&vs.root());
    formula::fill(&vs);
    let images = formula::images(&[IMAGES, 3, SIDE, SIDE]);
    let _ = net.features(&images.narrow(0, 0, 2)).expect("images"); // warm-up
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut checksum = 0.0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let features = net.features(&images).expect("images");
        ours.push(start.elapsed().as_secs_f64());
        checksum = features.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        theirs.push(pytorch_seconds(threads));
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let per_s = |s: f64| IMAGES as f64 / s;
    let (a, b) = (ours[ROUNDS / 2], theirs[ROUNDS / 2]);
    println!("CPU FID Inception features, {IMAGES} images {SIDE}x{SIDE} -> 299, {threads} threads, median of {ROUNDS} alternating rounds:");
    println!("  msnr (tch):   {a:.2} s ({:.1} img/s)  (rounds: {ours:.2?})", per_s(a));
    println!("  pytorch-fid:  {b:.2} s ({:.1} img/s)  (rounds: {theirs:.2?})", per_s(b));
    println!("  speed ratio (pytorch-fid / msnr): {:.2}x (target >= 1.0); feature checksum {checksum:.6}", b / a);
}

/// One timed pass of the reference (its median of one round), in a fresh process.
fn pytorch_seconds(threads: i32) -> f64 {
    let python =
        std::env::var("MSNR_FID_PYTHON").or_else(|_| std::env::var("MSNR_PYTHON")).unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/inception_cpu_ref.py");
    let out = Command::new(python)
        .args([script, &IMAGES.to_string(), &SIDE.to_string(), "1", &threads.to_string()])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "reference failed (needs torch and pytorch-fid): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    eprintln!("  (pytorch-fid checksum {})", line["checksum"]);
    line["seconds"][0].as_f64().expect("seconds")
}
