//! NVIDIA's `TorchScript` detector as `fid`'s feature network (a scripted random-weight module
//! with its interface, made by `tests/fixtures/checkpoint/make_fixtures.py`), and reference
//! statistics as their own artifact (`fid_reference`): computed once, read by every `fid`
//! stage naming them (also through `msnr run`: two fid stages, one `fid_reference` run),
//! refused when another network made them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use msnr::data::manifest::DType;
use msnr::data::writer::DatasetWriter;
use msnr::lang::Value;
use msnr::stages::{Reporter, StageSpec};
use msnr_torch::diffusion::models::detector::{is_torchscript, Detector};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint").join(name)
}

/// Counts the feature batches per set (`progress` is called once per batch with the set's name).
#[derive(Default)]
struct Batches(Mutex<BTreeMap<String, u64>>);

impl Reporter for Batches {
    fn progress(&self, _: u64, _: u64, message: &str) {
        *self.0.lock().unwrap().entry(message.to_owned()).or_default() += 1;
    }
    fn log(&self, _: &str) {}
}

fn write_dataset(dir: &Path, images: &Tensor) {
    let size: Vec<usize> = images.size().iter().map(|&d| usize::try_from(d).unwrap()).collect();
    let mut w = DatasetWriter::create(dir, [size[1], size[2], size[3]], DType::U8, vec!["x".into()]).unwrap();
    for i in 0..images.size()[0] {
        w.push(&Vec::<u8>::try_from(images.get(i).flatten(0, -1)).unwrap(), 0).unwrap();
    }
    w.finish().unwrap();
}

fn run(
    kind: &str,
    params: &[(&str, Value)],
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, f64>, String> {
    let params = params.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    std::fs::create_dir_all(out).unwrap();
    let spec = StageSpec::standalone(kind, params, out, &out.join("work"));
    msnr_torch::stages::run(&spec, reporter).map(|r| r.metrics).map_err(|e| e.to_string())
}

#[test]
fn the_detector_is_called_as_edm_calls_it() {
    let path = fixture("detector.pt");
    assert!(is_torchscript(&path));
    assert!(!is_torchscript(&fixture("seed_vit_xl_layout.pt")), "a torch.save state dict is no TorchScript module");
    let detector = Detector::load(&path, Device::Cpu).unwrap();
    let io: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("detector.io.safetensors")).unwrap().into_iter().collect();
    let ours = detector.features_batched(&io["images"], 3, &mut |_| {}).unwrap();
    let diff = (&ours - &io["features"]).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "{diff}");
    let floats = io["images"].to_kind(Kind::Float);
    assert!(detector.features(&floats).unwrap_err().contains("expected uint8 images"));
}

#[test]
fn reference_statistics_are_computed_once_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let images = |seed: i64, n: i64| {
        tch::manual_seed(seed);
        Tensor::randint(256, [n, 3, 12, 10], (Kind::Uint8, Device::Cpu))
    };
    for (name, seed, n) in [("reference", 1, 9), ("a", 2, 5), ("b", 3, 6)] {
        write_dataset(&dir.path().join(name), &images(seed, n));
    }
    let path = |p: &str| Value::Path(dir.path().join(p));
    let detector = ("inception", Value::Path(fixture("detector.pt")));
    let batch = ("batch", Value::Int(4));
    let made = Batches::default();
    let n = run(
        "fid_reference",
        &[("images", path("reference")), detector.clone(), batch.clone()],
        &dir.path().join("ref"),
        &made,
    )
    .unwrap();
    assert!((n["n"] - 9.0).abs() < 0.5, "{n:?}");
    assert_eq!(made.0.lock().unwrap()["reference"], 3, "9 images in batches of 4");

    for samples in ["a", "b"] {
        let shared = Batches::default();
        let base = [("samples", path(samples)), detector.clone(), batch.clone()];
        let with = |r: Value| base.iter().cloned().chain([("reference", r)]).collect::<Vec<_>>();
        let cached = run("fid", &with(path("ref")), &dir.path().join(format!("{samples}1")), &shared).unwrap();
        assert!(!shared.0.lock().unwrap().contains_key("reference"), "no reference features computed again");
        let direct =
            run("fid", &with(path("reference")), &dir.path().join(format!("{samples}2")), &Batches::default()).unwrap();
        for key in ["fid", "kid", "kid_std", "n", "n_reference"] {
            assert!(
                (cached[key] - direct[key]).abs() <= 1e-9 * direct[key].abs().max(1.0),
                "{key}: {cached:?} vs {direct:?}"
            );
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("a1/metrics.json")).unwrap()).unwrap();
    assert!(json["features"].as_str().unwrap().contains("TorchScript detector"), "{json}");

    // Statistics from another network are refused, naming both.
    let mut bytes = std::fs::read(dir.path().join("ref/reference.json")).unwrap();
    bytes = String::from_utf8(bytes).unwrap().replace("detector:", "detector:0").into_bytes();
    std::fs::write(dir.path().join("ref/reference.json"), bytes).unwrap();
    let params = [("samples", path("a")), ("reference", path("ref")), detector, batch];
    let err = run("fid", &params, &dir.path().join("bad"), &Batches::default()).unwrap_err();
    assert!(err.contains("the reference's features come from another network"), "{err}");
}

/// `target/<profile>/<name>`, built by `cargo build --workspace --bins` (`./msnrw test` does it).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent().and_then(Path::parent).expect("target/<profile>").join(name)
}

/// `msnr run p.msnr` in `dir`; its stderr.
fn msnr_run(dir: &Path) -> String {
    assert!(bin("msnr-worker").exists(), "build the binaries first (./msnrw test does)");
    let out = std::process::Command::new(bin("msnr"))
        .args(["run", "p.msnr"])
        .current_dir(dir)
        .env("MSNR_PLAIN", "1")
        .env("MSNR_DEVICE", "cpu")
        .env_remove("MSNR_HOME")
        .output()
        .expect("msnr runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn two_fid_stages_sharing_a_reference_compute_its_statistics_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".msnr")).unwrap();
    let detector = fixture("detector.pt");
    let fid = |name: &str, samples: &str| {
        format!(
            "stage {name} = fid {{ samples = {samples}, reference = ref, inception = {detector:?}, kid_subset_size = 10 }}\n"
        )
    };
    let mut pipeline = format!(
        "stage digits = mnist {{ count = 24 }}\nstage fewer = mnist {{ count = 12 }}\n\
         stage ref = fid_reference {{ images = digits, inception = {detector:?}, batch = 8 }}\n{}{}",
        fid("a", "fewer"),
        fid("b", "digits")
    );
    std::fs::write(dir.path().join("p.msnr"), &pipeline).unwrap();
    let first = msnr_run(dir.path());
    assert_eq!(first.matches("ref: done in").count(), 1, "{first}");
    assert_eq!(first.matches("/24 reference").count(), 2, "only `ref` computes reference features: {first}");
    for stage in ["a", "b"] {
        assert!(first.contains(&format!("{stage}: reference: cached statistics of 24 images")), "{first}");
    }
    // A third fid stage later: the reference is not computed again.
    pipeline.push_str(&fid("c", "fewer").replace("kid_subset_size = 10", "kid_subset_size = 8"));
    std::fs::write(dir.path().join("p.msnr"), &pipeline).unwrap();
    let second = msnr_run(dir.path());
    assert!(second.contains("ref: cached") && second.contains("1 ran, 5 cached"), "{second}");
    assert!(second.contains("c: reference: cached statistics of 24 images"), "{second}");
}
