//! The `checkpoint` stage on tiny checkpoints in the seed's released layout, made with the
//! seed's own `vision_transformer.py` by `tests/fixtures/checkpoint/make_fixtures.py`
//! (4000-row time table, 11 class rows for 10 classes): they load strictly, the model
//! artifact's denoiser reproduces the seed model's outputs on fixed inputs (1e-5), `sample`
//! draws from it as from a trained model (saying how it uses the longer time table), and
//! mismatches are one error listing every name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use msnr::lang::{stdlib, Value};
use msnr::stages::{Reporter, StageSpec};

use super::support::Lines;
use msnr_torch::diffusion::models::{self, load_weights, NetContext, NetParams, NetSpec};
use tch::nn::VarStore;
use tch::{Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint").join(name)
}

/// `vit { .. }` with the stdlib's defaults and `args` over them.
fn vit(args: &[(&str, i64)], null_class: bool) -> Value {
    let variant = stdlib().family("net").unwrap().variant("vit").unwrap();
    let mut all: BTreeMap<String, Value> =
        variant.params.iter().map(|p| (p.name.clone(), p.default.clone().unwrap())).collect();
    all.extend(args.iter().map(|(k, v)| ((*k).to_owned(), Value::Int(*v))));
    all.insert("null_class".into(), Value::Bool(null_class));
    Value::Ctor { name: "vit".into(), args: all }
}

fn ctor(name: &str) -> Value {
    Value::Ctor { name: name.into(), args: BTreeMap::new() }
}

/// The seed's tiny XL-layout checkpoint's parameters (its `time_rows` given or not).
fn xl_params(time_rows: i64) -> Vec<(&'static str, Value)> {
    let net = vit(&[("depth", 2), ("width", 32), ("heads", 4), ("patch", 2), ("time_rows", time_rows)], true);
    vec![
        ("weights", Value::Path(fixture("seed_vit_xl_layout.pt"))),
        ("net", net),
        ("target", ctor("x0")),
        ("classes", Value::Int(10)),
        ("channels", Value::Int(4)),
        ("size", Value::Int(8)),
    ]
}

fn run(
    kind: &str,
    params: &[(&str, Value)],
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, f64>, String> {
    let mut params: BTreeMap<String, Value> = params.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    std::fs::create_dir_all(out).unwrap();
    // The weights as a `download` stage's output folder, as the stdlib's seed checkpoints
    // come: then only the worker can match the names (a local file is matched by `check`,
    // see `msnr::stages::checkpoint`).
    let mut inputs = BTreeMap::new();
    if let Some(Value::Path(file)) = params.get("weights") {
        let folder = out.join("download");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(file, folder.join(file.file_name().unwrap())).unwrap();
        inputs.insert("download".to_owned(), folder);
        params.insert("weights".to_owned(), Value::Stage("download".to_owned()));
    }
    let mut spec = StageSpec::standalone(kind, params, out, &out.join("work"));
    spec.inputs = inputs;
    msnr_torch::stages::run(&spec, reporter).map(|r| r.metrics).map_err(|e| e.to_string())
}

/// The artifact's EMA weights in our ViT, run on the fixture's inputs, against the seed's outputs.
fn forward_matches_the_seed(model: &Path, name: &str, net: &Value, ctx: NetContext) {
    let params = BTreeMap::from([("net".to_owned(), net.clone())]);
    let none = |_: &str| msnr::stages::params::Shape::UNKNOWN;
    let mut r = msnr::stages::params::Reader::new(&params, &none, None);
    let net = NetParams::read(&mut r, "net").unwrap();
    let vs = VarStore::new(Device::Cpu);
    let vit = models::build(vs.root(), &NetSpec::new(&net, &ctx)).unwrap();
    load_weights(&vs, &model.join("ema.safetensors")).unwrap();
    let io: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("seed_vit.io.safetensors")).unwrap().into_iter().collect();
    let get = |k: &str| io[&format!("{name}.{k}")].shallow_clone();
    let out = tch::no_grad(|| vit.forward_t(&get("x"), &get("t"), Some(&get("y")), false));
    let want = get("out");
    let diff = (&out - &want).abs().max().double_value(&[]);
    eprintln!("{name}: max |ours - seed| = {diff:e} (outputs up to {:.3})", want.abs().max().double_value(&[]));
    assert!(diff < 1e-5, "{name}: {diff}");
}

#[test]
fn the_seeds_xl_layout_loads_strictly_and_matches_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("xl");
    let metrics = run("checkpoint", &xl_params(4000), &model, &Lines::default()).unwrap();
    assert!((metrics["parameters"] - 155_344.0).abs() < 0.5, "the seed model's count (meta.json): {metrics:?}");
    let (net, ctx) = (&xl_params(4000)[1].1, NetContext { image_size: 8, channels: 4, num_classes: 10, steps: 1000 });
    forward_matches_the_seed(&model, "xl_layout", net, ctx);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["data"], serde_json::json!({ "channels": 4, "height": 8, "width": 8, "num_classes": 10 }));
    assert!(model.join("model.safetensors").exists());
}

#[test]
fn a_nested_entry_with_a_prefix_loads_with_entry_and_strip_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let net = vit(&[("depth", 2), ("width", 32), ("heads", 4), ("patch", 4), ("time_rows", 4000)], true);
    let params = [
        ("weights", Value::Path(fixture("seed_vit_nested.pt"))),
        ("net", net.clone()),
        ("classes", Value::Int(10)),
        ("channels", Value::Int(3)),
        ("size", Value::Int(8)),
        ("entry", Value::Str("ema".into())),
        ("strip", Value::Str("module.".into())),
    ];
    run("checkpoint", &params, &dir.path().join("a"), &Lines::default()).unwrap();
    let ctx = NetContext { image_size: 8, channels: 3, num_classes: 10, steps: 1000 };
    forward_matches_the_seed(&dir.path().join("a"), "nested", &net, ctx);

    // `sample` reads it as a trained model, guided with the null label (row 10), and says
    // how the 4000-row table is used (a pixel model: a latent one needs its VAE to sample).
    let heun = Value::Ctor {
        name: "heun".into(),
        args: BTreeMap::from([
            ("steps".to_owned(), Value::Int(3)),
            ("rho".to_owned(), Value::Float(7.0)),
            ("sigma_min".to_owned(), Value::Float(0.002)),
            ("sigma_max".to_owned(), Value::Float(80.0)),
        ]),
    };
    let lines = Lines::default();
    let sample = [
        ("model", Value::Path(dir.path().join("a"))),
        ("sampler", heun),
        ("count", Value::Int(3)),
        ("guidance", Value::Float(1.5)),
        ("batch", Value::Int(2)),
    ];
    let drawn = run("sample", &sample, &dir.path().join("samples"), &lines).unwrap();
    assert_eq!((drawn["images"], drawn["nfe"]), (3.0, 5.0));
    let logs = lines.0.lock().unwrap().join("\n");
    assert!(logs.contains("time table has 4000 rows for T = 1000 timesteps"), "{logs}");

    // Without `strip`: every name is listed, and the prefix is pointed out.
    let err = run("checkpoint", &params[..6], &dir.path().join("b"), &Lines::default()).unwrap_err();
    assert!(err.contains("stage `checkpoint`: the weights do not match its net"), "{err}");
    assert!(err.contains("seed_vit_nested.pt"), "{err}");
    assert!(err.contains("missing (") && err.contains("\n    blocks.1.mlp.fc2.weight"), "{err}");
    assert!(err.contains("\n    module.blocks.1.mlp.fc2.weight"), "{err}");
    assert!(err.contains("set strip = \"module.\""), "{err}");
    // An entry the file does not hold names the ones it does.
    let mut wrong = params.to_vec();
    wrong[5] = ("entry", Value::Str("model".into()));
    let err = run("checkpoint", &wrong, &dir.path().join("c"), &Lines::default()).unwrap_err();
    assert!(err.contains("model") && err.contains("ema"), "{err}");
}

#[test]
fn todays_table_shapes_are_refused_with_every_mis_shaped_name() {
    // The failure: our default ViT has T time rows; the seed's file has 4000.
    let dir = tempfile::tempdir().unwrap();
    let err = run("checkpoint", &xl_params(0), &dir.path().join("a"), &Lines::default()).unwrap_err();
    assert!(
        err.contains("wrong shape (1):\n    time_embedding.weight: expected [1000, 32], found [4000, 32]"),
        "{err}"
    );
    assert!(!err.contains("missing") && !err.contains("unexpected"), "{err}");
    // Without the null class row the class table is one row short.
    let mut params = xl_params(4000);
    params[1].1 = vit(&[("depth", 2), ("width", 32), ("heads", 4), ("patch", 2), ("time_rows", 4000)], false);
    let err = run("checkpoint", &params, &dir.path().join("b"), &Lines::default()).unwrap_err();
    assert!(err.contains("class_embedding.weight: expected [10, 32], found [11, 32]"), "{err}");
}
