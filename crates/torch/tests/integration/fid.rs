//! Integration tests: FID's Inception-v3, Frechet distance and KID against pytorch-fid,
//! scipy and torch-fidelity (fixtures in tests/fixtures/fid, made by `make_fixtures.py`
//! there; its docstring explains the weight formula and the command).
//!
//! Tolerances: Inception outputs (float32 on both sides, batch norm folded here) agree to
//! 1e-4 of their largest magnitude; statistics in float64 to 1e-12; FID to 1e-6 relative of
//! pytorch-fid's scipy `sqrtm` route (the routes differ, see `frechet.rs`); KID, with the same
//! subsets as torch-fidelity, to 1e-9 relative.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use msnr::nets::ModelError;
use msnr_torch::diffusion::models::inception::{load_inception, load_inception_safetensors, FidInceptionV3};
use msnr_torch::metrics::npz::read_statistics;
use msnr_torch::metrics::{frechet_distance, kid, KidConfig, Statistics};
use serde_json::Value as Json;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Largest tolerated `max |ours - pytorch-fid| / max |pytorch-fid|` for the network.
const NET_TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fid").join(name)
}

fn load(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture(name)).unwrap().into_iter().collect()
}

fn expected() -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

mod cached;
mod formula;
mod stage;

/// The network with the formula's weights, and the weights by name.
fn formula_net() -> (VarStore, FidInceptionV3) {
    let vs = VarStore::new(Device::Cpu);
    let net = FidInceptionV3::new(&vs.root());
    formula::fill(&vs);
    (vs, net)
}

fn shape(v: &Json) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect()
}

fn relative_error(name: &str, ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size(), "{name}");
    let err = (ours - reference).abs().max().double_value(&[]) / reference.abs().max().double_value(&[]);
    eprintln!("{name}: relative error {err:e}");
    err
}

#[test]
fn formula_matches_the_fixture_script() {
    let check = &expected()["formula_check"];
    let hash = check["fnv1a64(Conv2d_1a_3x3.conv.weight)"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(formula::fnv1a64("Conv2d_1a_3x3.conv.weight"), hash);
    let want = check["u(images, 0..4)"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap());
    for (u, want) in formula::uniform("images", 4).zip(want) {
        assert!((u - want).abs() < 1e-15, "{u} != {want}"); // serde_json may round the last bit
    }
}

#[test]
fn inception_blocks_match_pytorch_fid() {
    type Block<'a> = &'a dyn Fn(&Tensor) -> Tensor;
    let (_vs, net) = formula_net();
    let out = load("inception.safetensors");
    let meta = &expected()["inception"];
    let blocks: [(&str, Block); 7] = [
        ("stem", &|x| net.stem(x)),
        ("Mixed_5b", &|x| net.mixed_5b.forward(x)),
        ("Mixed_6a", &|x| net.mixed_6a.forward(x)),
        ("Mixed_6b", &|x| net.mixed_6b.forward(x)),
        ("Mixed_7a", &|x| net.mixed_7a.forward(x)),
        ("Mixed_7b", &|x| net.mixed_7b.forward(x)),
        ("Mixed_7c", &|x| net.mixed_7c.forward(x)),
    ];
    for (name, block) in blocks {
        let input_shape = if name == "stem" { &meta["stem_input"] } else { &meta["block_inputs"][name] };
        let x = formula::input(&format!("input.{name}"), &shape(input_shape));
        let err = relative_error(name, &tch::no_grad(|| block(&x)), &out[name]);
        assert!(err < NET_TOLERANCE, "{name}: relative error {err:e}");
    }
}

#[test]
fn inception_features_match_pytorch_fid() {
    let (_vs, net) = formula_net();
    let out = load("inception.safetensors");
    let images = formula::images(&shape(&expected()["inception"]["images"]));
    assert_eq!(images, out["images_u8"]);
    let features = net.features(&images).unwrap();
    let reference = &out["features"];
    assert!(relative_error("features", &features, reference) < NET_TOLERANCE);
    // The features of the two images differ by ~1% of their size: compare the difference too.
    let diff = |f: &Tensor| f.get(0) - f.get(1);
    assert!(relative_error("features[0] - features[1]", &diff(&features), &diff(reference)) < 10.0 * NET_TOLERANCE);
    // Float input in [0, 1] is the same as uint8 / 255.
    let float = net.features(&(images.to_kind(Kind::Float) / 255.0)).unwrap();
    assert!(relative_error("features of float input", &float, reference) < NET_TOLERANCE);
    assert!(relative_error("logits", &tch::no_grad(|| net.logits(&features)), &out["logits"]) < NET_TOLERANCE);
    // One image at a time: the same features, and progress after each.
    let mut progress = Vec::new();
    let batched = net.features_batched(&images, 1, &mut |k| progress.push(k)).unwrap();
    assert!(relative_error("features one at a time", &batched, reference) < NET_TOLERANCE);
    assert_eq!(progress, [1, 2]);
}

#[test]
fn inception_weights_load_by_pytorch_fid_names() {
    let (vs, _net) = formula_net();
    let mut state: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    state.push(("Conv2d_1a_3x3.bn.num_batches_tracked".into(), Tensor::from(0i64)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inception.safetensors");
    Tensor::write_safetensors(&state, &path).unwrap();

    let fresh = VarStore::new(Device::Cpu);
    let _net = FidInceptionV3::new(&fresh.root());
    load_inception_safetensors(&fresh, &path).unwrap();
    let loaded = fresh.variables();
    assert!(state.iter().filter(|(k, _)| !k.ends_with("num_batches_tracked")).all(|(k, v)| &loaded[k] == v));

    let mut partial: HashMap<String, Tensor> = state.into_iter().collect();
    partial.remove("Mixed_7c.branch_pool.bn.running_var");
    let _ = partial.insert("AuxLogits.fc.weight".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)));
    let err = load_inception(&fresh, partial, Path::new("pt_inception.pth")).unwrap_err();
    let ModelError::Weights { missing, unexpected, .. } = &err else { panic!("{err}") };
    assert_eq!(
        (missing.as_slice(), unexpected.as_slice()),
        (&["Mixed_7c.branch_pool.bn.running_var".to_string()][..], &["AuxLogits.fc.weight".to_string()][..])
    );
}

fn close(what: &str, ours: f64, reference: f64, rel: f64) {
    eprintln!("{what}: ours {ours}, reference {reference}");
    assert!((ours - reference).abs() <= rel * reference.abs(), "{what}: ours {ours}, reference {reference}");
}

#[test]
fn statistics_and_frechet_distance_match_numpy_and_pytorch_fid() {
    let t = load("frechet.safetensors");
    let cases = expected()["frechet"]["expected"].clone();
    for (case, want) in cases.as_object().unwrap() {
        let get = |k: &str| &t[&format!("{case}.{k}")];
        let a = Statistics::of_features(get("x1"), "x1").unwrap();
        let b = Statistics::of_features(get("x2"), "x2").unwrap();
        for (ours, theirs) in
            [(&a.mu, get("mu1")), (&a.sigma, get("sigma1")), (&b.mu, get("mu2")), (&b.sigma, get("sigma2"))]
        {
            assert!(relative_error(&format!("{case} statistics"), ours, theirs) < 1e-12);
        }
        close(&format!("{case} FID"), frechet_distance(&a, &b).unwrap(), want["fid"].as_f64().unwrap(), 1e-6);
        // Statistics as given (an .npz): no low-rank factor, the d x d route on both sides.
        let given1 = Statistics::new(get("mu1"), get("sigma1"), 0, "mu1").unwrap();
        let given2 = Statistics::new(get("mu2"), get("sigma2"), 0, "mu2").unwrap();
        for (what, x, y) in [("given, features", &given1, &b), ("given, given", &given1, &given2)] {
            close(
                &format!("{case} FID ({what})"),
                frechet_distance(x, y).unwrap(),
                want["fid"].as_f64().unwrap(),
                1e-6,
            );
        }
        let same_given = frechet_distance(&given1, &given1).unwrap();
        assert!(same_given.abs() < 1e-9 * a.sigma.trace().double_value(&[]), "{case}: {same_given}");
        let same = frechet_distance(&a, &a).unwrap();
        assert!(same.abs() < 1e-9 * a.sigma.trace().double_value(&[]), "{case}: FID of a set with itself {same}");
    }
}

#[test]
fn statistics_files_read_as_numpy_wrote_them() {
    let t = load("frechet.safetensors");
    let (mu, sigma) = (&t["full_rank.mu1"], &t["full_rank.sigma1"]);
    let saved = read_statistics(&fixture("stats_pytorch_fid.npz")).unwrap();
    assert_eq!((&saved.mu, &saved.sigma), (mu, sigma));
    let f32_fortran = read_statistics(&fixture("stats_f32_fortran.npz")).unwrap();
    let rounded = |x: &Tensor| x.to_kind(Kind::Float).to_kind(Kind::Double);
    let skewed = sigma + sigma.ones_like().triu(1) * 0.25;
    assert_eq!((f32_fortran.mu, f32_fortran.sigma), (rounded(mu), rounded(&skewed)));
}

#[test]
fn kid_matches_torch_fidelity() {
    let t = load("kid.safetensors");
    let cases = expected()["kid"]["expected"].clone();
    for (case, want) in cases.as_object().unwrap() {
        let int = |k: &str| usize::try_from(want[k].as_u64().unwrap()).unwrap();
        let cfg = KidConfig {
            subsets: int("subsets"),
            subset_size: int("subset_size"),
            seed: u32::try_from(int("seed")).unwrap(),
        };
        let k = kid(&t[&format!("{case}.x1")], &t[&format!("{case}.x2")], &cfg).unwrap();
        close(&format!("{case} KID mean"), k.mean, want["kid_mean"].as_f64().unwrap(), 1e-9);
        let std = want["kid_std"].as_f64().unwrap();
        if std == 0.0 {
            assert!(k.std.abs() < 1e-15, "{case}: std {}", k.std);
        } else {
            close(&format!("{case} KID std"), k.std, std, 1e-9);
        }
        assert_eq!(k.subset_size, cfg.subset_size);
    }
}
