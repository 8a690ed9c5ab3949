//! Benchmark: VAE encoding on the CPU, the small parity-fixture `AutoencoderKL`
//! (`tests/fixtures/vae`: widths 32, 64, one layer per block, 8 groups, 4 latent channels)
//! on a batch of 16 images of 64x64, float32, the posterior mean; msnr (tch) against
//! diffusers' `AutoencoderKL.encode` in PyTorch eager (`benches/vae_cpu_ref.py`) in the same
//! run on one thread each, rounds alternating, compared by CPU time per image (user +
//! system, which other processes on the shared machine hardly change; wall-clock rates
//! beside). Target: ratio >= 1.0 (msnr at least as fast).
//!
//! `MSNR_VAE_PYTHON=<python with torch and diffusers> cargo bench -p msnr-torch --bench vae_cpu`

mod rounds;

use std::path::Path;

use msnr::nets::VaeConfig;
use msnr_torch::diffusion::models::AutoencoderKL;
use rounds::{cpu, median, Round};
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 16;
const SIDE: i64 = 64;
const ROUNDS: usize = 5;
/// One thread on both sides: CPU time per image is then steady on a shared, loaded machine.
const THREADS: i32 = 1;

fn main() {
    msnr::malloc::tune(); // as msnr-worker does
    tch::set_num_threads(THREADS);
    let mut ours_round = msnr_encoder();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(ours_round());
        theirs.push(diffusers_round());
    }
    let (a, b) = (median(&ours), median(&theirs));
    println!("CPU VAE encode (posterior mean), small AutoencoderKL (32, 64), {BATCH} images {SIDE}x{SIDE}, {THREADS} thread, median of {ROUNDS} alternating rounds:");
    println!("  msnr (tch):  {:.2} cpu-ms/img, {:.1} img/s  (cpu-ms/img rounds: {:.2?})", a.cpu, a.rate, cpu(&ours));
    println!("  diffusers:   {:.2} cpu-ms/img, {:.1} img/s  (cpu-ms/img rounds: {:.2?})", b.cpu, b.rate, cpu(&theirs));
    println!("  speed ratio (diffusers / msnr CPU time): {:.2}x (target >= 1.0)", b.cpu / a.cpu);
}

/// Our encoder, warmed up: each call encodes one batch.
fn msnr_encoder() -> impl FnMut() -> Round {
    let config =
        VaeConfig { block_out_channels: vec![32, 64], layers_per_block: 1, norm_num_groups: 8, ..VaeConfig::default() };
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/vae.safetensors");
    let (vs, vae) = AutoencoderKL::load(&weights, &config, Device::Cpu).expect("fixture weights");
    tch::manual_seed(0);
    let x = Tensor::rand([BATCH, 3, SIDE, SIDE], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let run = move || {
        let _vs = &vs;
        let (round, mean) = Round::measure(BATCH, || tch::no_grad(|| vae.encode(&x).mean));
        assert_eq!(mean.size(), [BATCH, 4, SIDE / 2, SIDE / 2]);
        round
    };
    let _ = run(); // warm-up
    run
}

fn diffusers_round() -> Round {
    let python =
        std::env::var("MSNR_VAE_PYTHON").or_else(|_| std::env::var("MSNR_PYTHON")).unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/vae_cpu_ref.py");
    // Three rounds in each fresh process, its median returned: a first full-size batch
    // costs diffusers up to 2x its steady state (allocations), which msnr's warm-up hides.
    let args = [3.to_string(), BATCH.to_string(), SIDE.to_string(), THREADS.to_string()];
    Round::reference(&python, script, &args, "needs torch and diffusers")
}
