//! Benchmark: sampling on the CPU, Heun with 18 steps (NFE 35) on a small ADM UNet
//! (16x16x3, 32 channels, mults 1,2, 10 classes, the `unet_cond` fixture weights), eps
//! target, batch 32, state in float64 and the net in float32 as the seed runs it; msnr (tch)
//! against the seed's sampler in PyTorch eager (`benches/sample_cpu_ref.py`) in the same run
//! on the same threads. Target: ratio >= 1.0 (msnr at least as fast).
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

fn main() {
    msnr::malloc::tune(); // as msnr-worker does
    let threads = tch::get_num_threads();
    let ours = msnr_img_per_s();
    let theirs = pytorch_img_per_s(threads);
    println!("CPU sampling, Heun {STEPS} steps (NFE {}), ADM UNet 16x16x3 (32 ch, mults 1,2), batch {BATCH}, {threads} threads, median of {ROUNDS}:", 2 * STEPS - 1);
    println!("  msnr (tch):      {ours:.1} img/s");
    println!("  PyTorch eager:   {theirs:.1} img/s");
    println!("  speed ratio (msnr / PyTorch): {:.2}x (target >= 1.0)", ours / theirs);
}

fn msnr_img_per_s() -> f64 {
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
    let model = GuidedModel::new(net.as_ref(), Target::Eps, &cfg, Kind::Float).expect("model");
    tch::manual_seed(0);
    let z = Tensor::randn([BATCH, 3, 16, 16], (Kind::Float, Device::Cpu)).to_kind(Kind::Double);
    let y = Tensor::randint(10, [BATCH], (Kind::Int64, Device::Cpu));
    let mut noise = FixedNoise(Tensor::zeros([0], (Kind::Double, Device::Cpu)));
    let mut run = || tch::no_grad(|| heun.sample(&model, &z, Some(&y), &mut noise));
    let _ = run(); // warm-up
    let mut times: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let _ = run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let batch = BATCH as f64;
    batch / times[ROUNDS / 2]
}

fn pytorch_img_per_s(threads: i32) -> f64 {
    let python = std::env::var("MSNR_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sample_cpu_ref.py");
    let args = [ROUNDS.to_string(), BATCH.to_string(), STEPS.to_string(), threads.to_string()];
    let out = Command::new(python).arg(script).args(&args).output().expect("python runs");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    line["img_per_s"].as_f64().expect("img_per_s")
}
