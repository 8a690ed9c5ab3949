//! Benchmark: the `images` stage importing JPEG and PNG folders, against its
//! Python twin `benches/pillow_images.py` (Pillow decode + `np.stack`, one
//! process, as a user would write it), on the same files.
//!
//! `cargo bench --bench images` (count per folder: `MSNR_BENCH_N`, default 2000;
//! Python: `$MSNR_PYTHON`, else `/work/main/.venv/bin/python`, else `python3`).

#[path = "data_support/mod.rs"]
mod data_support;

use data_support::{best_of, python_timing, report, spec, write_photos};
use msnr::lang::Value;
use msnr::stages::spec::Silent;

fn main() {
    msnr::malloc::tune(); // as the msnr binary does
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
        let out = tmp.path().join("out");
        let ours = best_of(5, || {
            let _ = std::fs::remove_dir_all(&out);
            let params = [("path", Value::Path(dir.clone())), ("channels", Value::Int(3))];
            msnr::stages::images::run(&spec("images", &out, &params), &Silent).unwrap();
        });
        let theirs = python_timing("pillow_images.py", &[dir.to_str().unwrap()]);
        report(&format!("{count} x {width}x{height} {ext}"), count, ours, theirs);
    }
}
