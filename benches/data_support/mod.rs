//! Helpers shared by the `images` and `crop` benchmarks: synthetic photos on
//! disk, the stage spec, the Python twin, and the comparison line.

// Synthetic pixel math: small values, lossy casts intended.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

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
    StageSpec::standalone(kind, params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(), out, out)
}

/// Wall and CPU seconds (all threads) of one run.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Elapsed seconds.
    pub wall: f64,
    /// User + system CPU seconds, summed over threads.
    pub cpu: f64,
}

/// This process's CPU seconds so far (`getrusage(RUSAGE_SELF)`: every thread, user + system).
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is handed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The run with the least wall time of `runs` calls of `f`.
pub fn best_of(runs: usize, mut f: impl FnMut()) -> Timing {
    (0..runs)
        .map(|_| {
            let (t, cpu) = (Instant::now(), cpu_seconds());
            f();
            Timing { wall: t.elapsed().as_secs_f64(), cpu: cpu_seconds() - cpu }
        })
        .min_by(|a, b| a.wall.total_cmp(&b.wall))
        .expect("at least one run")
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

/// Runs `benches/<script>` with `args`; its last line is the wall and CPU seconds of its best run.
pub fn python_timing(script: &str, args: &[&str]) -> Option<Timing> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join(script);
    let out = Command::new(python()).arg(&path).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.lines().last()?.split_whitespace().map(str::parse::<f64>);
    Some(Timing { wall: fields.next()?.ok()?, cpu: fields.next()?.ok()? })
}

/// Prints one comparison line: throughput and wall-time ratio, then CPU time
/// per image and its ratio (the per-core efficiency, which a loaded machine
/// distorts less than the wall time).
pub fn report(label: &str, count: usize, ours: Timing, theirs: Option<Timing>) {
    let n = count as f64;
    let per_image = |t: Timing| t.cpu / n * 1e3;
    let Some(theirs) = theirs else {
        println!("{label:<30} msnr {:>7.0} img/s, {:.3} cpu-ms/img; Pillow not run", n / ours.wall, per_image(ours));
        return;
    };
    println!(
        "{label:<30} msnr {:>7.0} img/s  Pillow {:>7.0} img/s  wall ratio {:>5.2}x | cpu-ms/img {:.3} vs {:.3} ({:.2}x)",
        n / ours.wall,
        n / theirs.wall,
        theirs.wall / ours.wall,
        per_image(ours),
        per_image(theirs),
        theirs.cpu / ours.cpu,
    );
}
