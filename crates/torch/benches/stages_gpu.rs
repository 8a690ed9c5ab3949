//! Benchmark: the `sample`, `fid` and `vae_encode` stages' GPU work, the twin of
//! `ref_sample_fid_vae.py` (shared/bench), with the same settings and random weights (the
//! cost does not depend on them), one JSON line per measurement like the reference's:
//! - sample: the seed's ViT-B/2 on 32x32x4 (1000 classes, x0 target, cosine T = 1000), EDM
//!   Heun 50 steps (NFE 99) with guidance 1.5 on a doubled batch, 256 images, bf16 autocast
//!   (`sample`'s `precision = bf16`), the state in float32;
//! - fid: `FidInceptionV3`'s pool features of 500 images 256x256, resized bilinearly to 299;
//! - vae: `AutoencoderKL` in Stable Diffusion's configuration encoding 32 images 256x256 to
//!   the posterior mean, fp32 and bf16 autocast.
//!
//! `cargo bench -p msnr-torch --bench stages_gpu -- [--only sample,fid,vae] [--tiny]` (`--tiny`:
//! small shapes, a quick CPU check; without it, it refuses to run without CUDA rather than
//! time the CPU). `benches/gpu_check.sh run stages` runs it beside the reference; peak GPU
//! memory comes from the script's `nvidia-smi` sampling, the same yardstick for both sides.

use std::time::Instant;

use msnr::nets::{NetSpec, VaeConfig, ViTConfig};
use msnr_torch::diffusion::models::inception::FidInceptionV3;
use msnr_torch::diffusion::models::{build, AutoencoderKL};
use msnr_torch::diffusion::sampler::{self, FixedNoise, GuidedModel, SamplerConfig, SamplerKind};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::Target;
use msnr_torch::shim::autocast;
use msnr_torch::stages::train::config::Precision;
use serde_json::json;
use tch::{nn, Cuda, Device, Kind, Tensor};

/// Seconds per call of `f` over `reps` calls after one warm-up call, the device synchronized
/// around them (as the reference's `timed`).
fn timed<T>(device: Device, reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let sync = || {
        if let Device::Cuda(i) = device {
            Cuda::synchronize(i64::try_from(i).expect("device index"));
        }
    };
    let _ = f();
    sync();
    let start = Instant::now();
    for _ in 0..reps {
        let _ = f();
    }
    sync();
    #[allow(clippy::cast_precision_loss)]
    let reps = reps as f64;
    start.elapsed().as_secs_f64() / reps
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: i64, seconds: f64) -> f64 {
    (n as f64 / seconds * 10.0).round() / 10.0
}

fn bench_sample(device: Device, tiny: bool) -> serde_json::Value {
    let (n, steps, size, width, depth, heads) = if tiny { (4, 3, 8, 64, 2, 2) } else { (256, 50, 32, 768, 12, 12) };
    let cfg = ViTConfig {
        image_size: size,
        in_channels: 4,
        out_channels: 4,
        width,
        depth,
        heads,
        num_classes: 1000,
        steps: 1000,
        ..ViTConfig::default()
    };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = build(vs.root(), &NetSpec::ViT(cfg)).expect("valid ViT");
    let sampling = SamplerConfig { kind: SamplerKind::Heun, steps, guidance: 1.5, ..SamplerConfig::default() };
    let heun = sampler::build(&sampling, &Schedule::cosine(1000).expect("schedule")).expect("sampler");
    let precision = if device.is_cuda() { Precision::Bf16 } else { Precision::Fp32 };
    let model = GuidedModel::new(net.as_ref(), Target::X0, &sampling, Kind::Float)
        .expect("conditional net")
        .with_precision(precision);
    let z = Tensor::randn([n, 4, size, size], (Kind::Float, device));
    let y = Tensor::randint(1000, [n], (Kind::Int64, device));
    let mut noise = FixedNoise(Tensor::zeros([0], (Kind::Float, device)));
    let dt = timed(device, if tiny { 1 } else { 2 }, || tch::no_grad(|| heun.sample(&model, &z, Some(&y), &mut noise)));
    json!({"bench": "sample", "model": if tiny { "ViT-T/2" } else { "ViT-B/2" },
           "sampler": format!("heun-{steps} cfg1.5"), "nfe": heun.nfe(), "batch": n,
           "precision": format!("{precision:?}").to_lowercase(),
           "s_per_batch": (dt * 1000.0).round() / 1000.0, "img_per_s": per_second(n, dt)})
}

fn bench_fid(device: Device, tiny: bool) -> serde_json::Value {
    let (n, size) = if tiny { (4, 64) } else { (500, 256) };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = FidInceptionV3::new(&vs.root());
    let x = Tensor::rand([n, 3, size, size], (Kind::Float, device));
    let dt = timed(device, if tiny { 1 } else { 5 }, || net.features(&x).expect("images"));
    json!({"bench": "fid-features", "model": "inception-v3 (1008 head)", "batch": n, "precision": "fp32",
           "img_per_s": per_second(n, dt)})
}

fn bench_vae(device: Device, tiny: bool) -> Vec<serde_json::Value> {
    let config = if tiny {
        VaeConfig { block_out_channels: vec![32, 32, 32, 32], ..VaeConfig::default() }
    } else {
        VaeConfig::default()
    };
    let (n, size) = if tiny { (2, 32) } else { (32, 256) };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let vae = AutoencoderKL::new(&vs.root(), &config);
    let x = Tensor::rand([n, 3, size, size], (Kind::Float, device)) * 2.0 - 1.0;
    let precisions: &[bool] = if device.is_cuda() { &[false, true] } else { &[false] };
    precisions
        .iter()
        .map(|&bf16| {
            let encode = || tch::no_grad(|| vae.encode(&x).mean * config.scaling_factor);
            let dt = timed(device, if tiny { 1 } else { 5 }, || if bf16 { autocast(true, encode) } else { encode() });
            json!({"bench": "vae-encode", "model": "AutoencoderKL (SD config)", "batch": n, "size": size,
                   "precision": if bf16 { "bf16" } else { "fp32" }, "img_per_s": per_second(n, dt)})
        })
        .collect()
}

fn main() {
    let (mut only, mut tiny) = ("sample,fid,vae".to_string(), false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--only" => only = it.next().unwrap_or_default(),
            "--tiny" => tiny = true,
            _ => {}
        }
    }
    let device = Device::cuda_if_available();
    if !tiny && !device.is_cuda() {
        eprintln!("stages_gpu: no CUDA device (is libtorch_cuda linked and a GPU present?); --tiny runs on the CPU");
        std::process::exit(2);
    }
    for what in only.split(',') {
        let rows = match what {
            "sample" => vec![bench_sample(device, tiny)],
            "fid" => vec![bench_fid(device, tiny)],
            "vae" => bench_vae(device, tiny),
            other => {
                eprintln!("stages_gpu: --only takes sample, fid, vae (not {other:?})");
                std::process::exit(2);
            }
        };
        for mut row in rows {
            row["device"] = json!(if device.is_cuda() { "cuda" } else { "cpu" });
            println!("{row}");
        }
    }
}
