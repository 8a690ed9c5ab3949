//! Integration tests: the VAE. Parity of the tch `AutoencoderKL` with diffusers' on a
//! small random configuration (`tests/fixtures/vae`, made by `make_fixtures.py`): the
//! posterior's mean and std and the decoder's output, on CPU in float32 against the
//! float64 reference; and the older diffusers attention names loading the same weights.

use std::collections::HashMap;
use std::path::PathBuf;

use msnr_torch::diffusion::models::{AutoencoderKL, ModelError, VaeConfig};
use tch::{Device, Tensor};

/// Largest tolerated `max |rust - reference| / max |reference|`.
const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae").join(name)
}

/// The fixture's configuration, read from diffusers' `config.json`.
pub(crate) fn small_config() -> VaeConfig {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    let int = |k: &str| json[k].as_i64().unwrap();
    VaeConfig {
        image_channels: int("in_channels"),
        block_out_channels: json["block_out_channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect(),
        layers_per_block: int("layers_per_block"),
        latent_channels: int("latent_channels"),
        norm_num_groups: int("norm_num_groups"),
        scaling_factor: json["scaling_factor"].as_f64().unwrap(),
    }
}

fn io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("io.safetensors")).unwrap().into_iter().collect()
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let err = (got - want).abs().max().double_value(&[]) / want.abs().max().double_value(&[]);
    assert!(err <= TOLERANCE, "{name}: relative error {err:.3e} > {TOLERANCE:e}");
}

#[test]
fn autoencoder_kl_matches_diffusers() {
    let (_vs, vae) = AutoencoderKL::load(&fixture("vae.safetensors"), &small_config(), Device::Cpu).unwrap();
    let io = io();
    let posterior = tch::no_grad(|| vae.encode(&io["x"]));
    assert_close("mean", &posterior.mean, &io["mean"]);
    assert_close("std", &posterior.std, &io["std"]);
    assert_close("reconstruction", &tch::no_grad(|| vae.decode(&posterior.mean)), &io["reconstruction"]);
    assert_close("decoded", &tch::no_grad(|| vae.decode(&io["z"])), &io["decoded"]);
}

#[test]
fn older_attention_names_load_the_same_weights() {
    let renames = [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")];
    let old: Vec<(String, Tensor)> = Tensor::read_safetensors(fixture("vae.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (renames.iter().fold(k, |k, (new, old)| k.replace(new, old)), t))
        .collect();
    assert!(old.iter().any(|(k, _)| k.ends_with("attentions.0.proj_attn.weight")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    Tensor::write_safetensors(&old, &path).unwrap();
    let (_vs, vae) = AutoencoderKL::load(&path, &small_config(), Device::Cpu).unwrap();
    let io = io();
    assert_close("mean (old names)", &tch::no_grad(|| vae.encode(&io["x"])).mean, &io["mean"]);
}

#[test]
fn a_config_that_does_not_match_the_weights_lists_the_differences() {
    let wider = VaeConfig { layers_per_block: 2, ..small_config() };
    let err = AutoencoderKL::load(&fixture("vae.safetensors"), &wider, Device::Cpu).unwrap_err();
    let ModelError::Weights { missing, .. } = &err else { panic!("{err}") };
    assert!(missing.contains(&"encoder.down_blocks.0.resnets.1.conv1.weight".to_owned()), "{err}");
}
