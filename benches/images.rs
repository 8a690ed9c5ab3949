//! Benchmark: the `images` stage importing JPEG and PNG folders, against its
//! Python twin `benches/pillow_images.py` (Pillow decode + `np.stack`, one
//! process, as a user would write it), on the same files.
//!
//! `cargo bench --bench images` (count per folder: `MSNR_BENCH_N`, default 2000;
//! Python: `$MSNR_PYTHON`, else `/work/main/.venv/bin/python`, else `python3`).

#[path = "data_support/mod.rs"]
mod data_support;

use std::path::Path;

use data_support::{best_of, child, own_timing, print_timing, python_timing, report, spec, write_photos, Timing};
use msnr::lang::Value;
use msnr::stages::spec::Silent;

fn main() {
    msnr::malloc::tune(); // as the msnr binary does
    if let Some((_, dir)) = child() {
        print_timing(time_import(&dir));
        return;
    }
    let n: usize = std::env::var("MSNR_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    println!("images stage vs Pillow, {} rayon threads", rayon::current_num_threads());
    let cases = [
        (64, 64, "png", n),
        (64, 64, "jpg", n),
        (178, 218, "jpg", n / 2),
        (256, 256, "png", n / 4),
        (256, 256, "jpg", n / 4),
    ];
    for (width, height, ext, count) in cases {
        let dir = tmp.path().join(format!("{width}x{height}-{ext}"));
        write_photos(&dir, count, |_| (width, height), ext);
        let ours = own_timing("images", &dir);
        let theirs = python_timing("pillow_images.py", &[dir.to_str().unwrap()]);
        report(&format!("{count} x {width}x{height} {ext}"), count, ours, theirs);
    }
}

/// The best of five `images` stage runs (RGB) on `dir`.
fn time_import(dir: &Path) -> Timing {
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("out");
    best_of(5, || {
        let _ = std::fs::remove_dir_all(&out);
        let params = [("path", Value::Path(dir.to_owned())), ("channels", Value::Int(3))];
        msnr::stages::images::run(&spec("images", &out, &params), &Silent).unwrap();
    })
}
