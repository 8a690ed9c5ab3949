//! Benchmark: sampling on the CPU, Heun with 18 steps (NFE 35) on a small ADM UNet
//! (16x16x3, 32 channels, mults 1,2, 10 classes, the `unet_cond` fixture weights), eps
//! target, batch 32, state in float64 and the net in float32 as the seed runs it; msnr (tch)
//! against the seed's sampler in PyTorch eager (`benches/sample_cpu_ref.py`) in the same run
//! on one thread each, rounds alternating, compared by CPU time per image (user + system, which
//! other processes on the machine hardly change; wall-clock rates are printed beside). Target:
//! ratio >= 1.0 (msnr at least as fast).
//!
//! `cargo bench -p msnr-torch --bench sample_cpu` (needs `$MSNR_PYTHON` with torch and
//! safetensors; `./msnrw` sets it).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use msnr_torch::diffusion::models::{build, load_weights, NetSpec, UNetConfig};
use msnr_torch::diffusion::sampler::{self, FixedNoise, GuidedModel, SamplerConfig};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::Target;
use tch::{nn, Device, Kind, Tensor};

const BATCH: i64 = 32;
const STEPS: usize = 18;
const ROUNDS: usize = 3;
/// One thread on both sides: CPU time per image is then steady on a shared, loaded machine.
const THREADS: i32 = 1;

fn main() {
    msnr::malloc::tune(); // as msnr-worker does
    tch::set_num_threads(THREADS);
    let mut ours_round = msnr_sampler();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(ours_round());
        theirs.push(pytorch_round());
    }
    let (a, b) = (median(&ours), median(&theirs));
    println!(
        "CPU sampling, Heun {STEPS} steps (NFE {}), ADM UNet 16x16x3 (32 ch, mults 1,2), batch {BATCH}, {THREADS} thread, median of {ROUNDS} alternating rounds:",
        2 * STEPS - 1
    );
    println!(
        "  msnr (tch):      {:.1} cpu-ms/img, {:.2} img/s  (cpu-ms/img rounds: {:.1?})",
        a.cpu,
        a.rate,
        cpu(&ours)
    );
    println!(
        "  PyTorch eager:   {:.1} cpu-ms/img, {:.2} img/s  (cpu-ms/img rounds: {:.1?})",
        b.cpu,
        b.rate,
        cpu(&theirs)
    );
    println!("  speed ratio (PyTorch / msnr CPU time): {:.2}x (target >= 1.0)", b.cpu / a.cpu);
}

/// One round: CPU milliseconds per image and images per wall second.
#[derive(Debug, Clone, Copy)]
struct Round {
    cpu: f64,
    rate: f64,
}

/// The round with the median CPU time.
fn median(rounds: &[Round]) -> Round {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
    sorted[sorted.len() / 2]
}

fn cpu(rounds: &[Round]) -> Vec<f64> {
    rounds.iter().map(|r| r.cpu).collect()
}

/// This process's CPU seconds so far (`getrusage(RUSAGE_SELF)`: every thread, user + system).
#[allow(clippy::cast_precision_loss)]
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is handed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Our sampler, warmed up: each call samples one batch.
fn msnr_sampler() -> impl FnMut() -> Round {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = UNetConfig {
        image_size: 16,
        in_channels: 3,
        out_channels: 3,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![8],
        num_heads: 2,
        use_scale_shift_norm: true,
        num_classes: 10,
        ..UNetConfig::default()
    };
    let net = build(vs.root(), &NetSpec::UNet(cfg)).expect("valid config");
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/unet_cond.weights.safetensors");
    load_weights(&vs, &weights).expect("fixture weights");
    let cfg = SamplerConfig { steps: STEPS, ..SamplerConfig::default() };
    let heun = sampler::build(&cfg, &Schedule::cosine(1000).expect("schedule")).expect("sampler");
    tch::manual_seed(0);
    let z = Tensor::randn([BATCH, 3, 16, 16], (Kind::Float, Device::Cpu)).to_kind(Kind::Double);
    let y = Tensor::randint(10, [BATCH], (Kind::Int64, Device::Cpu));
    let mut noise = FixedNoise(Tensor::zeros([0], (Kind::Double, Device::Cpu)));
    let mut run = move || {
        let model = GuidedModel::new(net.as_ref(), Target::Eps, &cfg, Kind::Float).expect("model");
        let _vs = &vs;
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let _ = tch::no_grad(|| heun.sample(&model, &z, Some(&y), &mut noise));
        #[allow(clippy::cast_precision_loss)]
        let batch = BATCH as f64;
        Round { cpu: (cpu_seconds() - cpu) * 1000.0 / batch, rate: batch / start.elapsed().as_secs_f64() }
    };
    let _ = run(); // warm-up
    run
}

fn pytorch_round() -> Round {
    let python = std::env::var("MSNR_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sample_cpu_ref.py");
    let args = [1.to_string(), BATCH.to_string(), STEPS.to_string(), THREADS.to_string()];
    let out = Command::new(python).arg(script).args(&args).output().expect("python runs");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    Round {
        cpu: line["cpu_ms_per_img"].as_f64().expect("cpu_ms_per_img"),
        rate: line["img_per_s"].as_f64().expect("img_per_s"),
    }
}
