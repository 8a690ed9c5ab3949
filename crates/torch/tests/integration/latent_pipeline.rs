//! Latent diffusion end to end through the real `msnr` and `msnr-worker` binaries, on
//! CPU and small: scikit-image photos -> crop -> `vae_encode` (the small diffusers
//! fixture VAE standing in for SD's weights, with flips) -> train -> sample (decoded by
//! the same VAE) -> classifier distance. Every stage caches, and a changed sample
//! parameter re-runs only `sample` and the score.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use msnr::data::{DType, Dataset, Images};

/// `target/<profile>/<name>`, built by `cargo build --workspace --bins` (`./msnrw test` does it).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent().and_then(Path::parent).expect("target/<profile>").join(name)
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn pipeline(seed: u64) -> String {
    format!(
        "param tiny = vae {{ block_out_channels = [32, 64], layers_per_block = 1, norm_groups = 8 }}
stage small = crop {{ images = \"photos\", recipe = adm {{}}, size = 16 }}
stage latents = vae_encode {{ images = small, vae = \"vae.safetensors\", config = tiny, flip = true, batch = 3 }}
stage model = train {{
  data = latents
  net = unet {{ channels = 32, mults = [1, 2], res_blocks = 1, attention = [4], heads = 2 }}
  schedule = cosine {{ steps = 100 }}
  batch = 4
  steps = 3
  label_dropout = 0.2
}}
stage samples = sample {{
  model = model
  sampler = ddim {{ steps = 3 }}
  count = 6
  batch = 4
  vae = \"vae.safetensors\"
  vae_config = tiny
  seed = {seed}
}}
stage judge = classifier {{ data = small, steps = 3, batch = 4, holdout = 2 }}
stage score = fid {{ samples = samples, reference = small, classifier = judge, kid_subsets = 2, kid_subset_size = 4 }}
"
    )
}

/// A project with two classes of two photos, each photo twice (8 images).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join(".msnr")).expect("store");
    let classes = [("a", ["astronaut.png", "coffee.png"]), ("b", ["chelsea.png", "rocket.jpg"])];
    for (class, files) in classes {
        let folder = dir.path().join("photos").join(class);
        std::fs::create_dir_all(&folder).expect("class folder");
        for file in files {
            for copy in ["1", "2"] {
                std::fs::copy(repo(&format!("tests/fixtures/photos/{file}")), folder.join(format!("{copy}-{file}")))
                    .expect("photo");
            }
        }
    }
    let vae = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/vae.safetensors");
    std::fs::copy(vae, dir.path().join("vae.safetensors")).expect("vae");
    dir
}

fn run(dir: &Path, seed: u64) -> Output {
    std::fs::write(dir.join("p.msnr"), pipeline(seed)).expect("pipeline");
    assert!(bin("msnr-worker").exists(), "build the binaries first (./msnrw test does)");
    let out = Command::new(bin("msnr"))
        .args(["run", "p.msnr"])
        .current_dir(dir)
        .env("MSNR_PLAIN", "1")
        .env("MSNR_DEVICE", "cpu")
        .env_remove("MSNR_HOME")
        .output()
        .expect("msnr runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The store's datasets, by their item dtype.
fn datasets(dir: &Path, dtype: DType) -> Vec<Dataset> {
    std::fs::read_dir(dir.join(".msnr/store"))
        .expect("store")
        .filter_map(|e| Dataset::open(&e.expect("entry").path().join("out")).ok())
        .filter(|d| d.manifest().dtype == dtype)
        .collect()
}

#[test]
fn photos_to_latents_to_decoded_samples_to_a_score_cache_and_rerun_what_changed() {
    let dir = project();
    let first = stderr(&run(dir.path(), 1));
    assert!(first.contains("6 ran, 0 cached"), "{first}");

    let latents = datasets(dir.path(), DType::F32);
    assert_eq!(latents.len(), 1, "one latent dataset");
    let m = latents[0].manifest();
    assert_eq!((m.count, m.channels, m.height, m.width), (16, 4, 8, 8), "8 photos and their flips, 16x16 -> 4x8x8");
    let (Images::F32(values), labels) = latents[0].read_all().expect("latents") else { panic!("f32 latents") };
    assert_eq!(labels, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], "labels kept, flips after");
    let item = 4 * 8 * 8;
    // Sorted by name: a/1-astronaut, a/1-coffee, a/2-astronaut, ...
    assert!(values[..item] == values[2 * item..3 * item], "the same photo twice gives the same mean latent");
    assert!(values[..item] != values[item..2 * item], "two photos differ");
    assert!(values[..item] != values[8 * item..9 * item], "the flipped copy differs");
    assert!(latents[0].dir().join("vae.json").exists());

    let samples: Vec<Dataset> =
        datasets(dir.path(), DType::U8).into_iter().filter(|d| d.dir().join("grid.png").exists()).collect();
    assert_eq!(samples.len(), 1);
    let s = samples[0].manifest();
    assert_eq!((s.count, s.channels, s.height, s.width), (6, 3, 16, 16), "decoded to 3x16x16 images");

    let again = stderr(&run(dir.path(), 1));
    assert!(again.contains("0 ran, 6 cached"), "{again}");
    let reseeded = stderr(&run(dir.path(), 2));
    assert!(reseeded.contains("2 ran, 4 cached"), "{reseeded}");
    assert!(reseeded.contains("latents: cached") && reseeded.contains("model: cached"), "{reseeded}");
}
