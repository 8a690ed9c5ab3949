//! Integration tests: models. Parity of the tch ViT and UNet with their PyTorch
//! references on fixed weights and inputs (`tests/fixtures/models`, made by
//! `make_fixtures.py`), strict weight loading, and parameter counts.

use std::collections::HashMap;
use std::path::PathBuf;

use msnr_torch::diffusion::models::{
    build, load_weights, Denoiser, ModelError, NetContext, NetParams, NetSpec, UNet, UNetConfig, ViT, ViTConfig,
};
use serde_json::Value as Json;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Largest tolerated `max |rust - reference| / max |reference|` (fp32 against fp64).
const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

fn meta() -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixture("meta.json")).unwrap()).unwrap()
}

fn int(cfg: &Json, key: &str, default: i64) -> i64 {
    cfg.get(key).and_then(Json::as_i64).unwrap_or(default)
}

fn ints(cfg: &Json, key: &str) -> Vec<i64> {
    cfg[key].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

/// The fixture's `SeedViT` keyword arguments as a [`ViTConfig`].
pub(crate) fn vit_config(name: &str) -> ViTConfig {
    let c = &meta()[name]["config"];
    ViTConfig {
        image_size: int(c, "image_size", 0),
        in_channels: int(c, "in_channels", 0),
        out_channels: int(c, "in_channels", 0),
        patch: int(c, "patch", 0),
        width: int(c, "width", 0),
        depth: int(c, "depth", 0),
        heads: int(c, "heads", 0),
        mlp_ratio: c["mlp_ratio"].as_f64().unwrap(),
        num_classes: int(c, "num_classes", 0),
        steps: int(c, "steps", 0),
        time_rows: None,
        null_class: true,
    }
}

/// The fixture's `UNetModel` keyword arguments as a [`UNetConfig`]; ADM takes attention
/// as downsample rates, msnr as resolutions: `image_size / rate`.
fn unet_config(name: &str) -> UNetConfig {
    let c = &meta()[name]["config"];
    let image_size = int(c, "image_size", 0);
    UNetConfig {
        image_size,
        in_channels: int(c, "in_channels", 0),
        out_channels: int(c, "out_channels", 0),
        model_channels: int(c, "model_channels", 0),
        channel_mult: ints(c, "channel_mult"),
        num_res_blocks: int(c, "num_res_blocks", 0),
        attention_resolutions: ints(c, "attention_resolutions").iter().map(|ds| image_size / ds).collect(),
        num_heads: int(c, "num_heads", 1),
        num_head_channels: c.get("num_head_channels").and_then(Json::as_i64),
        dropout: 0.0,
        use_scale_shift_norm: c["use_scale_shift_norm"].as_bool().unwrap(),
        resblock_updown: c.get("resblock_updown").and_then(Json::as_bool).unwrap_or(false),
        conv_resample: true,
        num_classes: int(c, "num_classes", 0),
    }
}

fn io(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(&format!("{name}.io.safetensors"))).unwrap().into_iter().collect()
}

fn param_count(vs: &VarStore) -> usize {
    vs.trainable_variables().iter().map(Tensor::numel).sum()
}

/// Loads the fixture's weights into `net` (built in `vs`), runs it on the fixture's
/// inputs and returns the relative error against the PyTorch output.
fn relative_error(name: &str, vs: &VarStore, net: &dyn Denoiser) -> f64 {
    load_weights(vs, &fixture(&format!("{name}.weights.safetensors"))).unwrap();
    let io = io(name);
    let out = tch::no_grad(|| net.forward_t(&io["x"], &io["t"], io.get("y"), false));
    let expected = &io["out"];
    assert_eq!(out.size(), expected.size());
    let err = (&out - expected).abs().max().double_value(&[]) / expected.abs().max().double_value(&[]);
    eprintln!("{name}: relative error {err:e}");
    err
}

fn vit_parity(name: &str) {
    let vs = VarStore::new(Device::Cpu);
    let vit = ViT::new(vs.root(), vit_config(name));
    let err = relative_error(name, &vs, &vit);
    assert!(err < TOLERANCE, "{name}: relative error {err:e}");
}

fn unet_parity(name: &str) {
    let vs = VarStore::new(Device::Cpu);
    let unet = UNet::new(vs.root(), unet_config(name));
    let err = relative_error(name, &vs, &unet);
    assert!(err < TOLERANCE, "{name}: relative error {err:e}");
}

#[test]
fn vit_matches_pytorch_class_conditional() {
    vit_parity("vit_cond");
}

#[test]
fn vit_matches_pytorch_unconditional() {
    vit_parity("vit_uncond");
}

#[test]
fn unet_matches_pytorch_scale_shift_class_conditional() {
    unet_parity("unet_cond");
}

#[test]
fn unet_matches_pytorch_mnist_28_resblock_updown_head_channels() {
    unet_parity("unet_mnist");
}

#[test]
fn fixture_parameter_counts_match_pytorch() {
    for name in ["vit_cond", "vit_uncond"] {
        let vs = VarStore::new(Device::Cpu);
        let _ = ViT::new(vs.root(), vit_config(name));
        assert_eq!(Some(param_count(&vs) as u64), meta()[name]["params"].as_u64(), "{name}");
    }
    for name in ["unet_cond", "unet_mnist"] {
        let vs = VarStore::new(Device::Cpu);
        let _ = UNet::new(vs.root(), unet_config(name));
        assert_eq!(Some(param_count(&vs) as u64), meta()[name]["params"].as_u64(), "{name}");
    }
}

#[test]
fn vit_s2_and_b2_parameter_counts_match_pytorch() {
    let paper = &meta()["paper"];
    let count = |cfg: ViTConfig| {
        let vs = VarStore::new(Device::Cpu);
        let _ = tch::no_grad(|| ViT::new(vs.root(), cfg));
        param_count(&vs) as u64
    };
    assert_eq!(Some(count(ViTConfig::small())), paper["vit_s2"].as_u64(), "ViT-S/2");
    assert_eq!(Some(count(ViTConfig::base())), paper["vit_b2"].as_u64(), "ViT-B/2");
}

#[test]
fn unet_paper_ablation_parameter_count_matches_pytorch() {
    let vs = VarStore::new(Device::Cpu);
    let _ = tch::no_grad(|| UNet::new(vs.root(), UNetConfig::paper_ablation()));
    assert_eq!(Some(param_count(&vs) as u64), meta()["paper"]["unet_ablation_64"].as_u64());
}

#[test]
fn a_renamed_or_resized_network_is_detected_when_loading() {
    let path = fixture("vit_cond.weights.safetensors");
    // One block more: its parameters are missing from the file.
    let mut deeper = VarStore::new(Device::Cpu);
    let _ = ViT::new(deeper.root(), ViTConfig { depth: 3, ..vit_config("vit_cond") });
    let Err(ModelError::Weights { missing, unexpected, mismatched, .. }) = load_weights(&deeper, &path) else {
        panic!("a deeper ViT loaded the weights of a shallower one")
    };
    assert!(missing.iter().all(|n| n.starts_with("blocks.2.")) && missing.len() == 13, "{missing:?}");
    assert!(unexpected.is_empty() && mismatched.is_empty());
    assert!(deeper.load(&path).unwrap_err().to_string().contains("blocks.2."), "VarStore::load reports it too");

    // Under another prefix every name differs: all missing, all unexpected.
    let vs = VarStore::new(Device::Cpu);
    let _ = ViT::new(vs.root() / "model", vit_config("vit_cond"));
    let err = load_weights(&vs, &path).unwrap_err();
    assert!(err.to_string().contains("missing (33): model.blocks.0."), "{err}");
    assert!(err.to_string().contains("unexpected (33): blocks.0."), "{err}");

    // Another class count: a shape mismatch, named.
    let vs = VarStore::new(Device::Cpu);
    let _ = ViT::new(vs.root(), ViTConfig { num_classes: 9, ..vit_config("vit_cond") });
    let ModelError::Weights { mismatched, .. } = load_weights(&vs, &path).unwrap_err() else { panic!() };
    assert_eq!(mismatched, ["class_embedding.weight: expected [10, 64], found [11, 64]"]);
}

#[test]
fn var_store_load_reads_the_reference_weights() {
    let mut vs = VarStore::new(Device::Cpu);
    let unet = UNet::new(vs.root(), unet_config("unet_cond"));
    vs.load(fixture("unet_cond.weights.safetensors")).unwrap();
    let io = io("unet_cond");
    let out = tch::no_grad(|| unet.forward(&io["x"], &io["t"], io.get("y")));
    let err = (&out - &io["out"]).abs().max().double_value(&[]) / io["out"].abs().max().double_value(&[]);
    assert!(err < TOLERANCE, "{err:e}");
}

#[test]
fn builds_from_the_net_parameters_and_trains_with_dropout() {
    let net = NetParams::Unet {
        channels: 32,
        mults: vec![1, 2, 2],
        res_blocks: 1,
        attention: vec![7],
        heads: 4,
        dropout: 0.3,
        scale_shift: true,
    };
    let ctx = NetContext { image_size: 28, channels: 1, num_classes: 10, steps: 1000 };
    let spec = NetSpec::new(&net, &ctx);
    let vs = VarStore::new(Device::Cpu);
    let model = build(vs.root(), &spec).unwrap();
    // Give the zero-initialized output convs weights so dropout shows in the output.
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if name.ends_with("out_layers.3.weight") || name == "out.2.weight" {
                var.copy_(&(var.randn_like() * 0.1));
            }
        }
    });
    let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let (t, y) = (Tensor::from_slice(&[10i64, 900]), Tensor::from_slice(&[3i64, 10]));
    let eval = model.forward_t(&x, &t, Some(&y), false);
    assert_eq!(eval.size(), [2, 1, 28, 28]);
    assert_eq!(eval, model.forward_t(&x, &t, Some(&y), false));
    assert_ne!(eval, model.forward_t(&x, &t, Some(&y), true));
    assert_eq!(model.null_label(), Some(10));
}

#[test]
fn invalid_networks_are_rejected_naming_the_parameter() {
    let ctx = NetContext { image_size: 28, channels: 1, num_classes: 10, steps: 1000 };
    let unet = NetParams::Unet {
        channels: 128,
        mults: vec![1, 2, 2, 2],
        res_blocks: 2,
        attention: vec![16],
        heads: 4,
        dropout: 0.0,
        scale_shift: true,
    };
    let err = build(VarStore::new(Device::Cpu).root(), &NetSpec::new(&unet, &ctx)).map(|_| ());
    assert_eq!(err.unwrap_err().into_param().0, "net.mults");
    let vit = NetParams::Vit { depth: 12, width: 768, heads: 12, patch: 3, time_rows: 0, null_class: true };
    let err = msnr_torch::diffusion::models::check_net(&vit, 28, 1).unwrap_err();
    assert_eq!(err.0, "net.patch");
    assert!(err.1.contains("patch 3 does not divide the image size 28"), "{}", err.1);
}
