//! Benchmark: the `crop` stage with both recipes, against its Python twin
//! `benches/pillow_crop.py` (the reference Pillow recipes, one process), on the
//! same files: `CelebA`-like 178x218 JPEGs for `ScoreSDE`'s crop (center 140 -> 64)
//! and `ImageNet`-like JPEGs of varied sizes around 500x375 for ADM's
//! `center_crop_arr` (-> 64).
//!
//! `cargo bench --bench crop` (count: `MSNR_BENCH_N`, default 2000 CelebA-like,
//! a quarter as many ImageNet-like; Python as in the `images` benchmark).

#[path = "data_support/mod.rs"]
mod data_support;

use std::collections::BTreeMap;

use std::path::Path;

use data_support::{best_of, child, own_timing, print_timing, python_timing, report, spec, write_photos, Timing};
use msnr::lang::Value;
use msnr::stages::spec::Silent;

fn main() {
    msnr::malloc::tune(); // as the msnr binary does
    if let Some((recipe, dir)) = child() {
        print_timing(time_crop(&recipe, &dir));
        return;
    }
    let n: usize = std::env::var("MSNR_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    let celeba = tmp.path().join("celeba");
    write_photos(&celeba, n, |_| (178, 218), "jpg");
    let imagenet = tmp.path().join("imagenet");
    let varied = |i: usize| (440 + (i * 37) % 120, 330 + (i * 53) % 90);
    write_photos(&imagenet, n / 4, varied, "jpg");
    println!("crop stage vs Pillow, {} rayon threads", rayon::current_num_threads());
    for (name, dir, count) in [("scoresde", &celeba, n), ("adm", &imagenet, n / 4)] {
        let ours = own_timing(name, dir);
        let theirs = python_timing("pillow_crop.py", &[dir.to_str().unwrap(), name, "64"]);
        report(&format!("{name}: {count} JPEGs -> 64x64"), count, ours, theirs);
    }
}

/// The best of five `crop` stage runs with `recipe` (`scoresde`: center 140; `adm`) on `dir`.
fn time_crop(recipe: &str, dir: &Path) -> Timing {
    let args = match recipe {
        "scoresde" => BTreeMap::from([("center".to_owned(), Value::Int(140))]),
        _ => BTreeMap::new(),
    };
    let recipe = Value::Ctor { name: recipe.into(), args };
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("out");
    best_of(5, || {
        let _ = std::fs::remove_dir_all(&out);
        let params = [
            ("images", Value::Path(dir.to_owned())),
            ("recipe", recipe.clone()),
            ("size", Value::Int(64)),
            ("channels", Value::Int(3)),
        ];
        msnr::stages::crop::run(&spec("crop", &out, &params), &Silent).unwrap();
    })
}
