//! The `fid` stage end to end in this process (`StageSpec::standalone`): datasets and
//! weights written here (the formula weights, as safetensors), its metrics against the
//! library's numbers, its outputs, a reference given as statistics, and its errors.

use std::collections::BTreeMap;
use std::path::Path;

use msnr::data::manifest::DType;
use msnr::data::writer::DatasetWriter;
use msnr::lang::Value;
use msnr::stages::spec::Silent;
use msnr::stages::StageSpec;
use msnr_torch::metrics::npz::{read_statistics, write_statistics};
use msnr_torch::metrics::{frechet_distance, kid, KidConfig, Statistics};
use tch::{Kind, Tensor};

use super::{formula, formula_net};

/// Writes `images` (`[n, c, h, w]` uint8) as a dataset at `dir`.
fn write_dataset(dir: &Path, images: &Tensor) {
    let size: Vec<usize> = images.size().iter().map(|&d| usize::try_from(d).unwrap()).collect();
    let mut w = DatasetWriter::create(dir, [size[1], size[2], size[3]], DType::U8, vec!["x".into()]).unwrap();
    for i in 0..images.size()[0] {
        let bytes = Vec::<u8>::try_from(images.get(i).flatten(0, -1)).unwrap();
        w.push(&bytes, 0).unwrap();
    }
    w.finish().unwrap();
}

fn run(params: &[(&str, Value)], out: &Path) -> Result<BTreeMap<String, f64>, String> {
    let params = params.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    std::fs::create_dir_all(out).unwrap();
    let spec = StageSpec::standalone("fid", params, out, &out.join("work"));
    msnr_torch::stages::run(&spec, &Silent).map(|r| r.metrics).map_err(|e| e.to_string())
}

#[test]
fn fid_stage_scores_datasets_and_statistics_as_the_library_does() {
    let dir = tempfile::tempdir().unwrap();
    let (vs, net) = formula_net();
    let weights = dir.path().join("pt_inception.safetensors");
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&vars, &weights).unwrap();
    // Few images: each costs a 299x299 forward pass (~0.3 s); the statistics stay 2048-d.
    let all = formula::images(&[5, 3, 12, 10]);
    let (samples, reference) = (all.narrow(0, 0, 2), all.narrow(0, 2, 3));
    write_dataset(&dir.path().join("samples"), &samples);
    write_dataset(&dir.path().join("reference"), &reference);

    let path = |p: &str| Value::Path(dir.path().join(p));
    let base =
        [("samples", path("samples")), ("inception", path("pt_inception.safetensors")), ("batch", Value::Int(2))];
    let with = |reference: Value| base.iter().cloned().chain([("reference", reference)]).collect::<Vec<_>>();
    let metrics = run(&with(path("reference")), &dir.path().join("out")).unwrap();

    let (fs, fr) = (net.features(&samples).unwrap(), net.features(&reference).unwrap());
    let (ss, sr) = (Statistics::of_features(&fs, "s").unwrap(), Statistics::of_features(&fr, "r").unwrap());
    let fid = frechet_distance(&ss, &sr).unwrap();
    let k = kid(&fs, &fr, &KidConfig::default()).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1e-3);
    assert!(close(metrics["fid"], fid), "{metrics:?} vs {fid}");
    assert!(close(metrics["kid"], k.mean) && close(metrics["kid_std"], k.std), "{metrics:?} vs {k:?}");
    assert_eq!((metrics["n"], metrics["n_reference"]), (2.0, 3.0));
    let saved = read_statistics(&dir.path().join("out/stats.npz")).unwrap();
    assert!((&saved.mu - &ss.mu).abs().max().double_value(&[]) < 1e-5);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/metrics.json")).unwrap()).unwrap();
    assert!(json["features"].as_str().unwrap().starts_with("inception-v3"));

    // The reference as statistics in a folder (e.g. a download's output): FID only.
    std::fs::create_dir(dir.path().join("stats")).unwrap();
    write_statistics(&sr, &dir.path().join("stats/VIRTUAL_ref.npz")).unwrap();
    let from_npz = run(&with(path("stats")), &dir.path().join("out2")).unwrap();
    assert!(close(from_npz["fid"], fid), "{from_npz:?} vs {fid}");
    assert!(!from_npz.contains_key("kid"));
}

#[test]
fn fid_stage_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let images = formula::images(&[2, 3, 8, 8]);
    write_dataset(&dir.path().join("samples"), &images);
    let path = |p: &str| Value::Path(dir.path().join(p));
    let no_weights = [("samples", path("samples")), ("reference", path("samples")), ("inception", Value::None)];
    let err = run(&no_weights, &dir.path().join("o1")).unwrap_err();
    assert!(err.contains("inception") && err.contains("no Inception weights"), "{err}");

    std::fs::write(dir.path().join("w.safetensors"), b"not safetensors").unwrap();
    let bad_weights =
        [("samples", path("samples")), ("reference", path("samples")), ("inception", path("w.safetensors"))];
    let err = run(&bad_weights, &dir.path().join("o2")).unwrap_err();
    assert!(err.contains("w.safetensors"), "{err}");

    let one = Tensor::zeros([1, 3, 8, 8], (Kind::Uint8, tch::Device::Cpu));
    write_dataset(&dir.path().join("one"), &one);
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let (vs, _net) = formula_net();
    let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    Tensor::write_safetensors(&vars, dir.path().join("good.safetensors")).unwrap();
    let few = [("samples", path("one")), ("reference", path("samples")), ("inception", path("good.safetensors"))];
    let err = run(&few, &dir.path().join("o3")).unwrap_err();
    assert!(err.contains("samples: 1 images; a Frechet distance needs at least 2"), "{err}");
    let no_ref = [("samples", path("samples")), ("reference", path("empty")), ("inception", path("good.safetensors"))];
    let err = run(&no_ref, &dir.path().join("o4")).unwrap_err();
    assert!(err.contains("expected a dataset or one file ending in .npz here, found 0"), "{err}");
}
