//! Integration tests: data. The crop recipes and mode conversions against the
//! outputs that `tests/fixtures/data/make_crop_fixtures.py` wrote with the reference code:
//! Pillow for ADM and the modes, `TensorFlow` for `ScoreSDE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use msnr::data::{convert, Dataset};
use msnr::lang::Value;
use msnr::stages::spec::Silent;
use msnr::stages::StageSpec;

const PHOTOS: [&str; 4] = ["astronaut", "chelsea", "coffee", "rocket"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// How far `ours` is from the reference's `theirs`: (share of equal bytes, share within one
/// level, largest gap).
#[allow(clippy::cast_precision_loss)]
fn agreement(ours: &[u8], theirs: &[u8]) -> (f64, f64, u8) {
    assert_eq!(ours.len(), theirs.len(), "sizes differ");
    let gaps: Vec<u8> = ours.iter().zip(theirs).map(|(a, b)| a.abs_diff(*b)).collect();
    let share = |f: &dyn Fn(u8) -> bool| gaps.iter().filter(|&&g| f(g)).count() as f64 / gaps.len() as f64;
    (share(&|g| g == 0), share(&|g| g <= 1), gaps.iter().copied().max().unwrap_or(0))
}

fn crop_spec(out: &Path, recipe: Value, size: i64, channels: i64) -> StageSpec {
    let params = BTreeMap::from([
        ("images".to_owned(), Value::Path(fixtures().join("photos"))),
        ("recipe".to_owned(), recipe),
        ("size".to_owned(), Value::Int(size)),
        ("channels".to_owned(), Value::Int(channels)),
    ]);
    StageSpec::standalone("crop", params, out, out)
}

fn recipe(name: &str, center: Option<i64>) -> Value {
    let args = center.map(|c| BTreeMap::from([("center".to_owned(), Value::Int(c))])).unwrap_or_default();
    Value::Ctor { name: name.into(), args }
}

/// Runs `crop` on the photos and compares every output with the reference's (the fixture).
/// `tolerance`: the largest gap allowed from a lossless input (JPEGs decoded without
/// libjpeg-turbo are checked more loosely, below).
fn check_crop(config: &str, recipe: Value, size: usize, channels: usize, tolerance: u8) {
    let dir = tempfile::tempdir().unwrap();
    let spec = crop_spec(dir.path(), recipe, i64::try_from(size).unwrap(), i64::try_from(channels).unwrap());
    let result = msnr::stages::crop::run(&spec, &Silent).unwrap();
    assert_eq!(result.metrics.get("images"), Some(&4.0));
    let (images, labels) = Dataset::open(dir.path()).unwrap().read_all().unwrap();
    assert_eq!(labels, vec![0; 4]);
    let item = channels * size * size;
    for (i, photo) in PHOTOS.iter().enumerate() {
        let expected = fixtures().join(format!("data/crop/{config}/{photo}.png"));
        let expected = convert::decode(&expected, channels).unwrap();
        let ours = msnr::data::Raster::from_chw(&images.as_u8().unwrap()[i * item..][..item], channels, size, size);
        let (exact, within_one, max) = agreement(&ours.data, &expected.data);
        let off = ours.data.iter().zip(&expected.data).filter(|(a, b)| a != b).count();
        eprintln!(
            "{config} {photo}: {:.2}% equal, {:.3}% within 1, max gap {max}, {off} of {item} values off",
            exact * 100.0,
            within_one * 100.0
        );
        // From a lossless PNG the input pixels are the reference's, and from a JPEG too when
        // libjpeg-turbo decodes it; the `image` crate's JPEG decoder rounds otherwise (below).
        if *photo == "rocket" && !cfg!(msnr_libjpeg) {
            assert!(within_one >= 0.99, "{config} {photo}: only {within_one} within one level, max {max}");
        } else {
            assert!(max <= tolerance, "{config} {photo}: max gap {max} over {tolerance}, only {exact} equal");
        }
    }
}

/// `ScoreSDE`'s recipe against `tf.image.resize(antialias=True)` run by `TensorFlow` 2.21 (bilinear,
/// the default; the fixtures of the bicubic resize msnr used before differ by up to 28 levels).
/// TF returns floats and msnr stores 8 bits, so the honest tolerance is one level of
/// `round(255 x)`: a float within rounding error of a half level may round either way. Same
/// `f32` operations in the same order: every value of these fixtures is equal (0 off by one).
#[test]
fn scoresde_crop_matches_tensorflow() {
    check_crop("scoresde140-64-RGB", recipe("scoresde", Some(140)), 64, 3, 1);
    check_crop("scoresde256-48-RGB", recipe("scoresde", Some(256)), 48, 3, 1);
    check_crop("scoresde40-64-RGB", recipe("scoresde", Some(40)), 64, 3, 1);
    check_crop("scoresde140-64-L", recipe("scoresde", Some(140)), 64, 1, 1);
}

/// ADM's recipe: a port of Pillow's integer arithmetic, so the bytes are Pillow's.
#[test]
fn adm_center_crop_arr_matches_pillow() {
    check_crop("adm-64-RGB", recipe("adm", None), 64, 3, 0);
    check_crop("adm-100-RGB", recipe("adm", None), 100, 3, 0);
    check_crop("adm-64-L", recipe("adm", None), 64, 1, 0);
}

#[test]
fn mode_conversions_match_pillow_exactly() {
    let modes = fixtures().join("data/modes");
    for name in ["rgb", "rgba", "palette", "la", "gray", "gray16", "gray16trns"] {
        for (channels, suffix) in [(3, "RGB"), (1, "L")] {
            let ours = convert::decode(&modes.join(format!("{name}.png")), channels).unwrap();
            let theirs = convert::decode(&modes.join(format!("{name}-{suffix}.png")), channels).unwrap();
            assert_eq!(ours, theirs, "{name} -> {suffix}");
        }
    }
}

/// With libjpeg-turbo (cfg `msnr_libjpeg`, what `build.rs` finds) JPEGs
/// decode as Pillow decodes them, byte for byte: same IDCT (`JDCT_ISLOW`) and
/// chroma upsampling ("fancy"), then Pillow's conversions. Without it the
/// `image` crate decodes with zune-jpeg, whose IDCT and upsampling round
/// differently, so pixels may differ by a few levels (JPEG fixes no exact output).
#[test]
fn jpeg_decode_matches_pillow() {
    let modes = fixtures().join("data/modes");
    for (name, min_within_one) in [("smooth444", 0.99), ("smooth422", 0.85), ("smooth420", 0.85), ("smoothgray", 0.99)]
    {
        for (channels, suffix) in [(3, "RGB"), (1, "L")] {
            let ours = convert::decode(&modes.join(format!("{name}.jpg")), channels).unwrap();
            let theirs = convert::decode(&modes.join(format!("{name}-{suffix}.png")), channels).unwrap();
            assert_eq!((ours.width, ours.height, ours.channels), (theirs.width, theirs.height, theirs.channels));
            let (exact, within_one, max) = agreement(&ours.data, &theirs.data);
            eprintln!(
                "{name}.jpg -> {suffix}: {:.2}% equal, {:.3}% within 1, max gap {max}",
                exact * 100.0,
                within_one * 100.0
            );
            if cfg!(msnr_libjpeg) {
                assert_eq!(max, 0, "{name} -> {suffix}: only {exact} equal to Pillow");
            } else {
                assert!(within_one >= min_within_one && max <= 4, "{name}: {within_one} within one level, max {max}");
            }
        }
    }
}

/// The full-size photo against the digests of Pillow's decode (RGB and L).
#[test]
fn rocket_jpeg_decodes_as_pillow() {
    use sha2::{Digest, Sha256};
    let digests = std::fs::read_to_string(fixtures().join("data/modes/rocket-sha256.txt")).unwrap();
    for line in digests.lines() {
        let (mode, digest) = line.split_once(' ').unwrap();
        let channels = if mode == "L" { 1 } else { 3 };
        let ours = convert::decode(&fixtures().join("photos/rocket.jpg"), channels).unwrap();
        assert_eq!((ours.width, ours.height, ours.channels), (640, 427, channels));
        let hex = format!("{:x}", Sha256::digest(&ours.data));
        if cfg!(msnr_libjpeg) {
            assert_eq!(hex, digest, "rocket.jpg -> {mode} differs from Pillow");
        }
    }
}
