//! Integration tests: one training step against a `PyTorch` twin of the seed repo's
//! `training_losses` (`TiankaiHang/Min-SNR-Diffusion-Training`, `gaussian_diffusion.py`).
//!
//! Fixture: tests/fixtures/step/, made by `make_fixtures.py` there: a tiny seed `ViT` with fixed
//! weights, a batch of 4 (labels, timesteps 2/15/50/90 of a cosine T = 100 schedule, noise), and
//! per case (target x the seed's `mse_loss_weight_type`) the float32 loss of the step and the
//! gradient of every parameter. Ours composes the train stage's step from the same parts:
//! `q_sample`, `Target::target`, the net in training mode, `loss` with a [`FactorTable`], then
//! `backward`.
//!
//! Tolerances, both `f32` computations with the same kernels but different formulas (the seed's
//! velocity is `(alpha * x_t - x0) / sigma` and its factor `min(snr, k) / snr` in `f32`; ours is
//! `alpha * eps - sigma * x0` and a factor table computed in `f64`): the loss within 1e-6
//! relative, each parameter's gradient within 1e-5 of its largest entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use msnr_torch::diffusion::loss::loss;
use msnr_torch::diffusion::models::{Denoiser, ViT, ViTConfig};
use msnr_torch::diffusion::schedule::Schedule;
use msnr_torch::diffusion::target::{q_sample, Target};
use msnr_torch::diffusion::weighting::{FactorTable, Weighting};
use msnr_torch::diffusion::{OnDevice, TargetOps};
use serde_json::Value as Json;
use tch::nn::VarStore;
use tch::{Device, Tensor};

const LOSS_TOLERANCE: f64 = 1e-6;
const GRAD_TOLERANCE: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/step")
}

fn fixture() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture_dir().join("step.safetensors")).unwrap().into_iter().collect()
}

fn meta() -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("step.json")).unwrap()).unwrap()
}

/// The fixture's `SeedViT` keyword arguments.
fn vit_config(net: &Json) -> ViTConfig {
    let int = |key: &str| net[key].as_i64().unwrap();
    ViTConfig {
        image_size: int("image_size"),
        in_channels: int("in_channels"),
        out_channels: int("in_channels"),
        patch: int("patch"),
        width: int("width"),
        depth: int("depth"),
        heads: int("heads"),
        mlp_ratio: net["mlp_ratio"].as_f64().unwrap(),
        num_classes: int("num_classes"),
        steps: int("steps"),
        time_rows: None,
        null_class: true,
    }
}

/// msnr's weighting for the seed's `mse_loss_weight_type` name (the cases the fixture has).
fn weighting(seed_name: &str) -> Weighting {
    match seed_name {
        "constant" => Weighting::Constant,
        "min_snr_5" | "vmin_snr_5" => Weighting::MinSnr(5.0),
        "snr" => Weighting::Snr,
        "inv_snr" => Weighting::InvSnr,
        other => panic!("no case for the seed's `{other}`"),
    }
}

/// Our step on the fixture's net and batch: the loss and every parameter's gradient.
fn our_step(
    f: &HashMap<String, Tensor>,
    net: &Json,
    target: Target,
    weighting: Weighting,
) -> (f64, HashMap<String, Tensor>) {
    let vs = VarStore::new(Device::Cpu);
    let vit = ViT::new(vs.root(), vit_config(net));
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            var.copy_(&f[&format!("weights/{name}")]);
        }
    });
    let steps = usize::try_from(net["steps"].as_i64().unwrap()).unwrap();
    let schedule = Schedule::cosine(steps).unwrap();
    let factors = FactorTable::new(&schedule, target, weighting).to_device(Device::Cpu);
    let schedule = schedule.to_device(Device::Cpu);
    let (x0, eps, t, y) = (&f["x0"], &f["noise"], &f["t"], &f["y"]);
    let x_t = q_sample(&schedule, x0, eps, t);
    let goal = target.target(&schedule, x0, eps, t);
    let pred = vit.forward_t(&x_t, t, Some(y), true);
    let terms = loss(&pred, &goal, t, &factors).unwrap();
    terms.loss.backward();
    let grads = vs.variables().into_iter().map(|(name, var)| (name, var.grad())).collect();
    (terms.loss.double_value(&[]), grads)
}

fn scalar(f: &HashMap<String, Tensor>, key: &str) -> f64 {
    f[key].double_value(&[0])
}

/// The largest gap between our gradients and the twin's, relative to each parameter's largest
/// reference entry, and the parameter it occurs at.
fn worst_gradient(f: &HashMap<String, Tensor>, case: &str, ours: &HashMap<String, Tensor>) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (name, grad) in ours {
        let reference = &f[&format!("{case}/grad/{name}")];
        let scale = reference.abs().max().double_value(&[]).max(f64::MIN_POSITIVE);
        let gap = (grad - reference).abs().max().double_value(&[]) / scale;
        if gap > worst.0 {
            worst = (gap, name.clone());
        }
    }
    worst
}

/// x0, eps and v targets with constant and Min-SNR-5 weighting (the seed's `min_snr_5`, and
/// `vmin_snr_5` for v): loss and gradients of one step as the seed computes them.
#[test]
fn one_step_matches_the_seed_training_losses() {
    let (f, meta) = (fixture(), meta());
    let cases = meta["cases"].as_array().unwrap();
    for case in cases.iter().filter(|c| c["rule"] == "seed") {
        let name = case["name"].as_str().unwrap();
        let target: Target = case["target"].as_str().unwrap().parse().unwrap();
        let (loss, grads) = our_step(&f, &meta["net"], target, weighting(case["seed_weighting"].as_str().unwrap()));
        let reference = scalar(&f, &format!("{name}/loss"));
        let rel = (loss / reference - 1.0).abs();
        let (gap, at) = worst_gradient(&f, name, &grads);
        eprintln!("{name}: loss {loss:.7} vs {reference:.7} (rel {rel:.1e}); gradients within {gap:.1e} ({at})");
        assert!(rel <= LOSS_TOLERANCE, "{name}: loss {loss} vs the seed's {reference}");
        assert!(gap <= GRAD_TOLERANCE, "{name}: gradient of {at} off by {gap:e} of its scale");
    }
}

/// Where msnr differs from the seed on purpose: the seed keeps weight 1 for `snr` and `inv_snr`
/// with eps and v targets; ours applies the x0-space rule (`w / SNR` for eps, `w / (SNR + 1)` for
/// v), which the twin computes for these cases. Ours matches that rule and not the seed's.
#[test]
fn snr_and_inv_snr_on_eps_and_v_follow_the_x0_space_rule_not_the_seed() {
    let (f, meta) = (fixture(), meta());
    let cases = meta["cases"].as_array().unwrap();
    let deliberate: Vec<_> = cases.iter().filter(|c| c["rule"] == "x0").collect();
    assert_eq!(deliberate.len(), 2, "eps + inv_snr and v + snr");
    for case in deliberate {
        let name = case["name"].as_str().unwrap();
        let target: Target = case["target"].as_str().unwrap().parse().unwrap();
        let (loss, grads) = our_step(&f, &meta["net"], target, weighting(case["seed_weighting"].as_str().unwrap()));
        let reference = scalar(&f, &format!("{name}/loss"));
        let rel = (loss / reference - 1.0).abs();
        let (gap, at) = worst_gradient(&f, name, &grads);
        let seed = scalar(&f, &format!("{name}/seed_loss"));
        eprintln!("{name}: loss {loss:.7} vs the x0-space rule's {reference:.7} (rel {rel:.1e}), the seed's {seed:.7}");
        assert!(rel <= LOSS_TOLERANCE, "{name}: loss {loss} vs the x0-space rule's {reference}");
        assert!(gap <= GRAD_TOLERANCE, "{name}: gradient of {at} off by {gap:e} of its scale");
        assert!((loss / seed - 1.0).abs() > 0.1, "{name}: the seed's weight-1 loss {seed} should differ");
    }
}
