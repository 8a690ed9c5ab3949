//! What the CPU benches that race msnr against a Python reference (`sample_cpu`, `vae_cpu`)
//! share: a round's CPU time per image (user + system, every thread: what other processes
//! on a shared machine hardly change) and wall-clock rate, the reference's round read from
//! its one JSON line, and the median of alternating rounds.

use std::process::Command;
use std::time::Instant;

#[path = "../../../../benches/data_support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

/// One round: CPU milliseconds per image and images per wall second.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub cpu: f64,
    pub rate: f64,
}

impl Round {
    /// Times `f`, which handles `images` images, in this process.
    pub fn measure<T>(images: i64, f: impl FnOnce() -> T) -> (Self, T) {
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let out = f();
        #[allow(clippy::cast_precision_loss)]
        let n = images as f64;
        (Self { cpu: (cpu_seconds() - cpu) * 1000.0 / n, rate: n / start.elapsed().as_secs_f64() }, out)
    }

    /// The reference's round: `python script args...` prints one JSON line with
    /// `cpu_ms_per_img` and `img_per_s`; `needs` says what it needs when it fails.
    pub fn reference(python: &str, script: &str, args: &[String], needs: &str) -> Self {
        let out = Command::new(python).arg(script).args(args).output().expect("python runs");
        assert!(out.status.success(), "reference failed ({needs}): {}", String::from_utf8_lossy(&out.stderr));
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        Self {
            cpu: line["cpu_ms_per_img"].as_f64().expect("cpu_ms_per_img"),
            rate: line["img_per_s"].as_f64().expect("img_per_s"),
        }
    }
}

/// The round with the median CPU time.
pub fn median(rounds: &[Round]) -> Round {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
    sorted[sorted.len() / 2]
}

/// Each round's CPU milliseconds per image.
pub fn cpu(rounds: &[Round]) -> Vec<f64> {
    rounds.iter().map(|r| r.cpu).collect()
}
