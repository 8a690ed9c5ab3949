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

mod rounds;

use std::path::Path;

use msnr_torch::diffusion::models::{build, load_weights, NetSpec, UNetConfig};
use msnr_torch::diffusion::sampler::{self, FixedNoise, GuidedModel, SamplerConfig};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::Target;
use rounds::{cpu, median, Round};
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
        Round::measure(BATCH, || tch::no_grad(|| heun.sample(&model, &z, Some(&y), &mut noise))).0
    };
    let _ = run(); // warm-up
    run
}

fn pytorch_round() -> Round {
    let python = std::env::var("MSNR_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/sample_cpu_ref.py");
    let args = [1.to_string(), BATCH.to_string(), STEPS.to_string(), THREADS.to_string()];
    Round::reference(&python, script, &args, "needs torch and safetensors")
}
