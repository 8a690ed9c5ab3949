//! Helpers shared by the `images` and `crop` benchmarks: synthetic photos on
//! disk, the stage spec, the Python twin, and the comparison line.

// Synthetic pixel math: small values, lossy casts intended.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use msnr::lang::Value;
use msnr::stages::StageSpec;
use rayon::prelude::*;

/// Writes `count` synthetic `width x height` RGB photos (smooth shading, edges
/// and noise, so codecs work as on real photos) named `00000.<ext>`, ... into `dir`.
pub fn write_photos(dir: &Path, count: usize, size: impl Fn(usize) -> (usize, usize) + Sync, ext: &str) {
    std::fs::create_dir_all(dir).unwrap();
    (0..count).into_par_iter().for_each(|i| {
        let (w, h) = size(i);
        let (w, h) = (w as u32, h as u32);
        let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ i as u64;
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|p| {
                let (x, y) = ((p % w) as f32, (p / w) as f32);
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let noise = (state >> 59) as f32;
                let wave = (x * 0.11 + i as f32).sin() * (y * 0.07).cos() * 60.0;
                let edge = if (x as u32 / 24 + y as u32 / 24 + i as u32) % 2 == 0 { 40.0 } else { 0.0 };
                [x * 0.5 + wave + noise, y * 0.6 + edge + noise, 128.0 - wave + noise]
                    .map(|v| v.clamp(0.0, 255.0) as u8)
            })
            .collect();
        image::save_buffer(dir.join(format!("{i:05}.{ext}")), &pixels, w, h, image::ExtendedColorType::Rgb8).unwrap();
    });
}

/// A spec for stage `kind` with `params`, writing into `out`.
pub fn spec(kind: &str, out: &Path, params: &[(&str, Value)]) -> StageSpec {
    StageSpec {
        name: "bench".into(),
        kind: kind.into(),
        params: params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        inputs: BTreeMap::new(),
        out_dir: out.to_owned(),
        work_dir: out.to_owned(),
        seed: 0,
        device: "cpu".into(),
        pins: BTreeMap::new(),
    }
}

/// Best wall time in seconds of `runs` calls of `f`.
pub fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// `$MSNR_PYTHON`, else the project venv, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MSNR_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from("/work/main/.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `benches/<script>` with `args`; it prints its best time in seconds on the last line.
pub fn python_seconds(script: &str, args: &[&str]) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join(script);
    let out = Command::new(python()).arg(&path).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().last()?.trim().parse().ok()
}

/// Prints one comparison line.
pub fn report(label: &str, count: usize, ours: f64, theirs: Option<f64>) {
    let rate = |s: f64| count as f64 / s;
    match theirs {
        Some(t) => println!(
            "{label:<34} msnr {:>8.0} img/s   Pillow {:>8.0} img/s   ratio {:>5.2}x",
            rate(ours),
            rate(t),
            t / ours
        ),
        None => println!("{label:<34} msnr {:>8.0} img/s   Pillow (not run)", rate(ours)),
    }
}
