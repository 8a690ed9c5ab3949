//! The sample stage end to end through the real `msnr` and `msnr-worker` binaries: a
//! tiny model trained on MNIST digits is sampled with guidance into a dataset artifact
//! with `grid.png`; a run with a larger `count` reproduces the smaller run's images byte
//! for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use msnr::data::{Dataset, Images};

/// `target/<profile>/<name>`, built by `cargo build --workspace --bins` (`./msnrw test` does it).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent().and_then(Path::parent).expect("target/<profile>").join(name)
}

fn pipeline(count: u64) -> String {
    format!(
        "stage digits = mnist {{ count = 32 }}
stage small = crop {{ images = digits, recipe = adm {{}}, size = 16 }}
stage model = train {{
  data = small
  net = unet {{ channels = 32, mults = [1, 2], res_blocks = 1, attention = [8], heads = 2 }}
  target = eps
  schedule = cosine {{ steps = 100 }}
  batch = 4
  steps = 4
  label_dropout = 0.2
}}
stage samples = sample {{
  model = model
  sampler = ddpm {{ steps = 5, clip = true }}
  count = {count}
  batch = 2
  guidance = 1.5
  t_from = 0
  t_to = 60
  seed = 3
}}
"
    )
}

/// Runs `pipeline(count)` in a fresh project; returns the samples' images, labels and folder.
fn run(count: u64) -> (Vec<u8>, Vec<i64>, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join(".msnr")).expect("store");
    std::fs::write(dir.path().join("p.msnr"), pipeline(count)).expect("pipeline");
    assert!(bin("msnr-worker").exists(), "build the binaries first (./msnrw test does)");
    let out = Command::new(bin("msnr"))
        .args(["run", "p.msnr"])
        .current_dir(dir.path())
        .env("MSNR_PLAIN", "1")
        .env("MSNR_DEVICE", "cpu")
        .env_remove("MSNR_HOME")
        .output()
        .expect("msnr runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = dir.path().join(".msnr/store");
    let samples = std::fs::read_dir(&store)
        .expect("store")
        .map(|e| e.expect("entry").path().join("out"))
        .find(|out| out.join("grid.png").exists())
        .expect("a samples artifact with grid.png");
    let data = Dataset::open(&samples).expect("a dataset");
    let (Images::U8(images), labels) = data.read_all().expect("readable") else { panic!("u8 images") };
    (images, labels, dir, samples)
}

#[test]
fn sampling_writes_a_dataset_and_more_images_keep_the_first() {
    let (five, labels5, _keep5, samples) = run(5);
    assert_eq!((five.len(), labels5.len()), (5 * 16 * 16, 5));
    assert!(labels5.iter().all(|l| (0..10).contains(l)));
    let grid = std::fs::read(samples.join("grid.png")).expect("grid.png");
    assert!(grid.starts_with(b"\x89PNG"));
    let (seven, labels7, _keep7, _) = run(7);
    assert_eq!(&seven[..five.len()], &five[..], "image i depends only on (seed, i)");
    assert_eq!(&labels7[..5], &labels5[..]);
    assert_ne!(&five[..256], &five[256..512], "images differ");
}
