//! Integration tests: samplers. Final samples of our Heun/Euler, DDIM and DDPM against their
//! references (EDM's `ablation_sampler` driving the seed's discrete-model wrapper; diffusers'
//! `DDIMScheduler` and `DDPMScheduler` loops), all in float64 on the same denoiser-like seed
//! ViT with the same noise (tests/fixtures/sampler, made by `make_fixtures.py` there); and
//! the determinism of drawing images by index.

use std::collections::HashMap;
use std::path::PathBuf;

use msnr_torch::diffusion::models::{load_weights, ViT};
use msnr_torch::diffusion::sampler::grid::{model_sigmas, KarrasGrid};
use msnr_torch::diffusion::sampler::{
    build, draw, DrawConfig, Drawn, FixedNoise, GuidedModel, Labels, SamplerConfig, SamplerKind,
};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::Target;
use serde_json::Value as Json;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Largest tolerated `max |ours - reference|` of final samples (float64 on both sides).
const TOLERANCE: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sampler").join(name)
}

fn tensors() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("sampler.safetensors")).unwrap().into_iter().collect()
}

fn cases() -> serde_json::Map<String, Json> {
    serde_json::from_str::<Json>(&std::fs::read_to_string(fixture("cases.json")).unwrap())
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// The fixture ViT (`vit_cond`'s shape, denoiser-like weights), in `kind`.
fn vit(kind: Kind) -> (VarStore, ViT) {
    let mut vs = VarStore::new(Device::Cpu);
    let net = ViT::new(vs.root(), crate::models::vit_config("vit_cond"));
    load_weights(&vs, &fixture("vit.weights.safetensors")).unwrap();
    vs.set_kind(kind);
    (vs, net)
}

/// A fixture case's parameters as a [`SamplerConfig`] and its schedule.
fn config(case: &Json) -> (SamplerConfig, Schedule) {
    let f = |key: &str, default: f64| case.get(key).and_then(Json::as_f64).unwrap_or(default);
    let i = |key: &str| case.get(key).and_then(Json::as_i64).unwrap_or(-1);
    let (from, to) = (i("t_from"), i("t_to"));
    let cfg = SamplerConfig {
        kind: case["sampler"].as_str().unwrap().parse().unwrap(),
        steps: usize::try_from(case["steps"].as_u64().unwrap()).unwrap(),
        eta: f("eta", 0.0),
        clip_x0: case.get("clip").and_then(Json::as_bool).unwrap_or(false),
        guidance: f("guidance", 1.0),
        guidance_interval: (from >= 0 && to > from).then_some((from, to)),
        ..SamplerConfig::default()
    };
    let train_steps = usize::try_from(case.get("train_steps").and_then(Json::as_u64).unwrap_or(1000)).unwrap();
    (cfg, Schedule::cosine(train_steps).unwrap())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Runs one fixture case; returns `max |ours - reference|`.
fn run_case(name: &str, case: &Json, net: &ViT, t: &HashMap<String, Tensor>) -> f64 {
    let (cfg, schedule) = config(case);
    let target: Target = case["target"].as_str().unwrap().parse().unwrap();
    let sampler = build(&cfg, &schedule).unwrap();
    let model = GuidedModel::new(net, target, &cfg, Kind::Double).unwrap();
    let step_noise = t
        .get(&format!("{name}.step_noise"))
        .map_or_else(|| Tensor::zeros([0], (Kind::Double, Device::Cpu)), Tensor::shallow_clone);
    let out = tch::no_grad(|| sampler.sample(&model, &t["noise"], Some(&t["labels"]), &mut FixedNoise(step_noise)));
    max_diff(&out, &t[&format!("{name}.out")])
}

fn parity(prefix: &str) {
    let (_vs, net) = vit(Kind::Double);
    let t = tensors();
    let mut ran = 0;
    for (name, case) in cases().iter().filter(|(name, _)| name.starts_with(prefix)) {
        let diff = run_case(name, case, &net, &t);
        eprintln!("{name}: max |ours - reference| = {diff:e}");
        assert!(diff < TOLERANCE, "{name}: max |ours - reference| = {diff:e}");
        ran += 1;
    }
    assert!(ran >= 2, "{prefix}: only {ran} fixture cases");
}

#[test]
fn heun_matches_edm_ablation_sampler_on_the_seeds_wrapper() {
    parity("heun_");
}

#[test]
fn euler_matches_edm_ablation_sampler() {
    let (_vs, net) = vit(Kind::Double);
    let t = tensors();
    let diff = run_case("euler_x0_cfg", &cases()["euler_x0_cfg"], &net, &t);
    assert!(diff < TOLERANCE, "euler_x0_cfg: {diff:e}");
}

#[test]
fn ddim_matches_diffusers() {
    parity("ddim_");
}

#[test]
fn ddpm_matches_diffusers_on_guided_diffusion_respacing() {
    parity("ddpm_");
}

#[test]
fn guidance_changes_the_fixture_samples() {
    let t = tensors();
    assert!(max_diff(&t["heun_eps.out"], &t["heun_eps_cfg.out"]) > 1e-2, "guided and unguided cases must differ");
}

#[test]
fn karras_grid_is_the_seeds() {
    let t = tensors();
    let u = model_sigmas(&Schedule::cosine(1000).unwrap(), 0.001);
    let seed_u: Vec<f64> = Vec::try_from(&t["u"]).unwrap();
    assert_eq!(u.len(), seed_u.len());
    for (ours, seed) in u.iter().zip(&seed_u) {
        assert!((ours - seed).abs() <= 1e-12 * seed, "u: {ours} vs {seed}");
    }
    for (name, case) in cases().iter().filter(|(_, c)| c["sampler"] == "heun") {
        let (cfg, schedule) = config(case);
        let ours = KarrasGrid::new(&cfg, &schedule);
        let seed: Vec<f64> = Vec::try_from(&t[&format!("{name}.sigmas")]).unwrap();
        assert_eq!(ours.sigmas().len(), seed.len(), "{name}");
        for (a, b) in ours.sigmas().iter().zip(&seed) {
            assert!((a - b).abs() <= 1e-12 * b, "{name}: sigma {a} vs {b}");
        }
    }
}

/// Draws `range` in batches of `batch` with `cfg`, as (bytes, labels) per image.
fn drawn(cfg: &SamplerConfig, net: &ViT, range: std::ops::Range<u64>, batch: usize) -> Vec<(Vec<u8>, i64)> {
    let schedule = Schedule::cosine(1000).unwrap();
    let sampler = build(cfg, &schedule).unwrap();
    let model = GuidedModel::new(net, Target::Eps, cfg, Kind::Float).unwrap();
    let labels = Labels::new(10, vec![]).unwrap();
    let draw_cfg = DrawConfig { seed: 11, batch, shape: [4, 8, 8], device: Device::Cpu, kind: Kind::Double };
    let mut out = Vec::new();
    draw(sampler.as_ref(), &model, &labels, &draw_cfg, range, |d: Drawn| {
        assert_eq!(d.images.kind(), Kind::Uint8);
        for (row, label) in d.labels.iter().enumerate() {
            out.push((Vec::<u8>::try_from(d.images.get(i64::try_from(row).unwrap()).flatten(0, -1)).unwrap(), *label));
        }
        Ok::<_, ()>(())
    })
    .unwrap();
    out
}

#[test]
fn sample_i_depends_only_on_seed_and_i() {
    let (_vs, net) = vit(Kind::Float);
    for kind in [SamplerKind::Ddpm, SamplerKind::Heun] {
        let cfg = SamplerConfig { kind, steps: 3, guidance: 1.5, clip_x0: true, ..SamplerConfig::default() };
        let first = drawn(&cfg, &net, 0..4, 2);
        let more = drawn(&cfg, &net, 0..6, 2);
        assert_eq!(first[..], more[..4], "{kind}: raising the count keeps the first images");
        assert_eq!(drawn(&cfg, &net, 4..6, 2), more[4..], "{kind}: the new images alone are the same");
        assert_ne!(more[0].0, more[1].0, "{kind}: images differ");
        let other = drawn(&cfg, &net, 0..6, 3);
        for ((a, la), (b, lb)) in more.iter().zip(&other) {
            assert_eq!(la, lb, "{kind}: labels do not depend on the batch");
            let worst = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
            assert!(worst <= 1, "{kind}: another batch size changes a pixel by {worst}");
        }
    }
}
