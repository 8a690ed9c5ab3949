//! Benchmark: one CPU training step of a small ADM UNet on 28x28 MNIST-shaped
//! data (batch 32, eps target, Min-SNR-5, AdamW, clipping), msnr (tch) against
//! the same model in PyTorch eager (`benches/train_cpu_ref.py`), in the same run
//! on the same threads. Target: ratio >= 1.0 (msnr at least as fast).
//!
//! `cargo bench --bench train_cpu` (needs `$MSNR_PYTHON` with torch; `./msnrw` sets it).

use std::process::Command;
use std::time::Instant;

use msnr_torch::diffusion::flat::FlatParams;
use msnr_torch::diffusion::loss::loss;
use msnr_torch::diffusion::models::{build, NetSpec, UNetConfig};
use msnr_torch::diffusion::optimizer::{AdamW, AdamWConfig};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::{q_sample, Target};
use msnr_torch::diffusion::timesteps::TimestepSampler;
use msnr_torch::diffusion::weighting::{FactorTable, Weighting};
use msnr_torch::diffusion::OnDevice;
use tch::{nn, Device, Kind, Tensor};

const STEPS: usize = 30;
const WARMUP: usize = 5;
const ROUNDS: usize = 3;

fn main() {
    msnr::malloc::tune(); // as msnr-worker does
    let threads = tch::get_num_threads();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..ROUNDS {
        ours.push(msnr_ms_per_step());
        theirs.push(pytorch_ms_per_step(threads));
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    let (a, b) = (ours[ROUNDS / 2], theirs[ROUNDS / 2]);
    println!("CPU train step, ADM UNet 28x28x1 (32 ch, mults 1,2,2), batch 32, {threads} threads, median of {ROUNDS} alternating rounds:");
    println!("  msnr (tch):      {a:.1} ms/step  (rounds: {ours:.1?})");
    println!("  PyTorch eager:   {b:.1} ms/step  (rounds: {theirs:.1?})");
    println!("  speed ratio (PyTorch / msnr): {:.2}x (target >= 1.0)", b / a);
}

fn msnr_ms_per_step() -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = UNetConfig {
        image_size: 28,
        in_channels: 1,
        out_channels: 1,
        model_channels: 32,
        channel_mult: vec![1, 2, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![7],
        num_heads: 4,
        num_classes: 10,
        ..UNetConfig::default()
    };
    let net = build(vs.root(), &NetSpec::UNet(cfg)).expect("valid config");
    let params = FlatParams::new(&vs).expect("parameters");
    let mut opt = AdamW::new(&params, AdamWConfig { lr: 1e-4, weight_decay: 0.0, ..AdamWConfig::default() });
    let schedule = Schedule::cosine(1000).expect("schedule");
    let sched = schedule.to_device(Device::Cpu);
    let factors = FactorTable::new(&schedule, Target::Eps, Weighting::MinSnr(5.0)).to_device(Device::Cpu);
    let data = Tensor::rand([5000, 1, 28, 28], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let labels = Tensor::randint(10, [5000], (Kind::Int64, Device::Cpu));
    let mut sampler = TimestepSampler::new(1000, 0);
    let mut step = || {
        let idx = Tensor::randint(5000, [32], (Kind::Int64, Device::Cpu));
        let (x0, y) = (data.index_select(0, &idx), labels.index_select(0, &idx));
        let t = sampler.sample(32, Device::Cpu);
        let eps = x0.randn_like();
        let xt = q_sample(&sched, &x0, &eps, &t);
        params.clear_grads(); // as the train stage: before the forward pass
        let terms = loss(&net.forward_t(&xt, &t, Some(&y), true), &eps, &t, &factors).expect("shapes agree");
        terms.loss.backward();
        params.attach_grads();
        let _ = params.clip_grad_norm(1.0);
        opt.step(&params);
    };
    for _ in 0..WARMUP {
        step();
    }
    let start = Instant::now();
    for _ in 0..STEPS {
        step();
    }
    #[allow(clippy::cast_precision_loss)]
    let steps = STEPS as f64;
    start.elapsed().as_secs_f64() * 1000.0 / steps
}

fn pytorch_ms_per_step(threads: i32) -> f64 {
    let python = std::env::var("MSNR_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train_cpu_ref.py");
    let out = Command::new(python)
        .args([script, &STEPS.to_string(), &WARMUP.to_string(), &threads.to_string()])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    line["ms_per_step"].as_f64().expect("ms_per_step")
}
