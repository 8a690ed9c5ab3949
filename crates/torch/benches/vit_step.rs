//! Benchmark: the seed paper's training step on latents, the twin of
//! `ref_vit_minsnr.py` (shared/bench): ViT-S/2 or ViT-B/2 on 32x32x4, 1000
//! classes, x0 target with Min-SNR-5 on the cosine schedule (T = 1000), AdamW
//! (lr 1e-4, betas 0.99/0.99, weight decay 0.03) over flat buffers, bf16
//! autocast on CUDA. Prints one JSON line per model, like the reference, so the
//! two can be compared in the same run on the same card.
//!
//! `cargo bench -p msnr-torch --bench vit_step -- [--configs S,B] [--batch 256] [--steps 50] [--tiny]
//! [--phase step|fwd|fwdbwd|opt] [--trace FILE]` (`--tiny`: a 2-block ViT on 8x8 latents, a quick CPU check;
//! `--phase`: time only the forward with its loss, forward and backward, or the optimizer update,
//! beside `vit_phases.py`, to find where a gap to the reference lies; `--trace`: after timing,
//! profile 5 more steps into a Chrome trace, which `trace_summary.py` compares with the
//! reference's `vit_phases.py --trace`). Without `--tiny` it
//! refuses to run without CUDA rather than time the CPU. `benches/gpu_check.sh` runs it beside
//! the PyTorch reference on a GPU machine.

use std::time::Instant;

use msnr::nets::{NetSpec, ViTConfig};
use msnr_torch::diffusion::flat::FlatParams;
use msnr_torch::diffusion::loss::loss;
use msnr_torch::diffusion::models::build;
use msnr_torch::diffusion::optimizer::{AdamW, AdamWConfig};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::{q_sample, Target};
use msnr_torch::diffusion::timesteps::TimestepSampler;
use msnr_torch::diffusion::weighting::{FactorTable, Weighting};
use msnr_torch::diffusion::OnDevice;
use msnr_torch::stages::train::config::Precision;
use tch::{nn, Cuda, Device, Kind, Tensor};

/// Command-line settings.
struct Args {
    configs: Vec<String>,
    batch: i64,
    steps: usize,
    tiny: bool,
    phase: String,
    trace: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        configs: vec!["S".into(), "B".into()],
        batch: 256,
        steps: 50,
        tiny: false,
        phase: "step".into(),
        trace: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--configs" => a.configs = it.next().unwrap_or_default().split(',').map(String::from).collect(),
            "--batch" => a.batch = it.next().and_then(|v| v.parse().ok()).unwrap_or(256),
            "--steps" => a.steps = it.next().and_then(|v| v.parse().ok()).unwrap_or(50),
            "--tiny" => {
                a.tiny = true;
                a.configs = vec!["tiny".into()];
            }
            "--phase" => a.phase = it.next().unwrap_or_default(),
            "--trace" => a.trace = it.next(),
            _ => {}
        }
    }
    a
}

fn config(name: &str, tiny: bool) -> ViTConfig {
    let base = ViTConfig {
        image_size: 32,
        in_channels: 4,
        out_channels: 4,
        num_classes: 1000,
        steps: 1000,
        ..ViTConfig::default()
    };
    match (name, tiny) {
        (_, true) => ViTConfig { image_size: 8, width: 64, depth: 2, heads: 2, ..base },
        ("S", _) => ViTConfig { width: 512, depth: 13, heads: 8, ..base },
        _ => ViTConfig { width: 768, depth: 12, heads: 12, ..base },
    }
}

fn main() {
    let a = args();
    let device = Device::cuda_if_available();
    if !a.tiny && !device.is_cuda() {
        eprintln!("vit_step: no CUDA device (is libtorch_cuda linked and a GPU present?); --tiny runs on the CPU");
        std::process::exit(2);
    }
    if !["step", "fwd", "fwdbwd", "opt"].contains(&a.phase.as_str()) {
        eprintln!("vit_step: --phase is one of step, fwd, fwdbwd, opt");
        std::process::exit(2);
    }
    let precision = if device.is_cuda() { Precision::Bf16 } else { Precision::Fp32 };
    for name in &a.configs {
        let cfg = config(name, a.tiny);
        let name = if a.tiny { "tiny" } else { name.as_str() };
        let (batch, steps, warmup) = if a.tiny { (4, 3, 1) } else { (a.batch, a.steps, 10) };
        let size = cfg.image_size;
        tch::manual_seed(0);
        let vs = nn::VarStore::new(device);
        let net = build(vs.root(), &NetSpec::ViT(cfg)).expect("valid ViT");
        let params = FlatParams::new(&vs).expect("parameters");
        let adamw = AdamWConfig { lr: 1e-4, betas: (0.99, 0.99), eps: 1e-8, weight_decay: 0.03, warmup: 0 };
        let mut opt = AdamW::new(&params, adamw);
        let schedule = Schedule::cosine(1000).expect("schedule");
        let sched = schedule.to_device(device);
        let factors = FactorTable::new(&schedule, Target::X0, Weighting::MinSnr(5.0)).to_device(device);
        let x0 = Tensor::randn([batch, 4, size, size], (Kind::Float, device));
        let y = Tensor::randint(1000, [batch], (Kind::Int64, device));
        let mut sampler = TimestepSampler::new(1000, 0);
        let phase = a.phase.as_str();
        let mut step = || {
            if phase == "opt" {
                opt.step(&params);
                return params.data().get(0);
            }
            if phase != "fwd" {
                params.clear_grads(); // as the train stage: before the forward pass
            }
            let t = sampler.sample(usize::try_from(batch).expect("batch"), device);
            let eps = x0.randn_like();
            let xt = q_sample(&sched, &x0, &eps, &t);
            let pred = autocast(precision, || net.forward_t(&xt, &t, Some(&y), true));
            let terms = loss(&pred, &x0, &t, &factors).expect("shapes agree");
            if phase == "fwd" {
                // Detached, as `vit_phases.py` does: holding the graph until the next forward
                // ended kept two steps of activations alive (twice the reference's peak).
                return terms.loss.detach();
            }
            terms.loss.backward();
            params.attach_grads();
            if phase == "step" {
                opt.step(&params);
            }
            terms.loss
        };
        for _ in 0..warmup {
            let _ = step();
        }
        sync(device);
        let start = Instant::now();
        let mut last = Tensor::zeros([1], (Kind::Float, device));
        for _ in 0..steps {
            last = step();
        }
        sync(device);
        let secs = start.elapsed().as_secs_f64();
        if let Some(trace) = &a.trace {
            let path = format!("{trace}.{name}.json");
            msnr_torch::shim::profile_start().expect("profiler starts");
            for _ in 0..5 {
                let _ = step();
            }
            sync(device);
            msnr_torch::shim::profile_stop(std::path::Path::new(&path)).expect("trace written");
        }
        #[allow(clippy::cast_precision_loss)]
        let (ms, ips, params_m) =
            (1000.0 * secs / steps as f64, (batch as f64) * (steps as f64) / secs, params.numel() as f64 / 1e6);
        println!(
            "{{\"impl\": \"msnr\", \"phase\": \"{phase}\", \"model\": \"ViT-{name}/2\", \"params_m\": {params_m:.1}, \"batch\": {batch}, \"steps\": {steps}, \"step_ms\": {ms:.2}, \"img_per_s\": {ips:.1}, \"loss\": {:.4}, \"device\": \"{device:?}\"}}",
            last.double_value(&[])
        );
    }
}

fn autocast(precision: Precision, f: impl FnOnce() -> Tensor) -> Tensor {
    msnr_torch::stages::train::autocast::forward(precision, f)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        Cuda::synchronize(i64::try_from(i).expect("device index"));
    }
}
