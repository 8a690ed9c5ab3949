//! Helpers shared by the `images` and `crop` benchmarks: synthetic photos on
//! disk, the stage spec, the Python twin, and the comparison line.

// Synthetic pixel math: small values, lossy casts intended.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

mod cpu;

use cpu::cpu_seconds;
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

/// The environment variable that makes a benchmark binary time one case of its own side and
/// exit ([`own_timing`]): `<case>` then the folder, separated by a tab.
const CHILD: &str = "MSNR_BENCH_CHILD";

/// When this process is a child started by [`own_timing`]: its case and folder.
#[must_use]
pub fn child() -> Option<(String, PathBuf)> {
    let spec = std::env::var(CHILD).ok()?;
    let (case, dir) = spec.split_once('\t')?;
    Some((case.to_owned(), PathBuf::from(dir)))
}

/// Prints `t` as the last line a parent's [`own_timing`] reads (the Python twins' format).
pub fn print_timing(t: Timing) {
    println!("{} {}", t.wall, t.cpu);
}

/// Times msnr's side of `case` on `dir` in a fresh process, as a user's `msnr run` would: this
/// benchmark binary again, which sees [`child`] and prints its [`best_of`]. (Timed inside the
/// process that had just written the photos, the same code ran 10-25% slower in about a third of
/// the runs, user time alone; fresh processes, like the Python side's, do not.)
pub fn own_timing(case: &str, dir: &Path) -> Option<Timing> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe).env(CHILD, format!("{case}\t{}", dir.display())).output().ok()?;
    if !out.status.success() {
        eprintln!("msnr side of {case} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    last_timing(&out.stdout)
}

/// The wall and CPU seconds on the last line of a child's output.
fn last_timing(stdout: &[u8]) -> Option<Timing> {
    let text = String::from_utf8_lossy(stdout);
    let mut fields = text.lines().last()?.split_whitespace().map(str::parse::<f64>);
    Some(Timing { wall: fields.next()?.ok()?, cpu: fields.next()?.ok()? })
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
    last_timing(&out.stdout)
}

/// Prints one comparison line: throughput and wall-time ratio, then CPU time
/// per image and its ratio (the per-core efficiency, which a loaded machine
/// distorts less than the wall time).
pub fn report(label: &str, count: usize, ours: Option<Timing>, theirs: Option<Timing>) {
    let Some(ours) = ours else {
        println!("{label:<30} msnr side failed");
        return;
    };
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
