//! The `images` stage (a folder of image files becomes a dataset, labelled as
//! torchvision's `ImageFolder` labels it) and the `mnist` stage (the bundled
//! MNIST-5k digits become a dataset).

use serde::{Deserialize, Serialize};

use super::kinds::KindParams;
use super::params::{ParamError, Reader, Shape, Source};
use super::spec::{Reporter, StageError, StageResult, StageSpec};
use crate::data::import::{import_files, Transform};
use crate::data::{folder, mnist, DType, DatasetWriter, Manifest, Raster, Region};

/// The `images` kind's parameters (`stdlib/data.msnr`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImagesParams {
    /// The folder of images: a local path or a `files` stage.
    pub path: Source,
    /// Channels kept per image: 1 (L) or 3 (RGB).
    pub channels: usize,
}

impl KindParams for ImagesParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let path = r.source("path");
        let channels = read_channels(r, "channels");
        Some(Self { path: path?, channels: channels? })
    }

    fn shape(&self, _: &Reader<'_>) -> Shape {
        Shape::images(u32::try_from(self.channels).ok(), None)
    }
}

/// `kind images -> dataset { path: files, channels: int = 3 }`.
///
/// # Errors
/// A bad parameter, an unreadable or corrupt image (named), or images of
/// different sizes (the first mismatch named, with a hint to use `crop`).
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let p: ImagesParams = spec.typed()?;
    let root = spec.source_dir(&p.path)?;
    let images = folder::scan(&root)?;
    if let Some(warning) = images.dropped_warning(&root) {
        reporter.log(&warning);
    }
    let keep = |raster: Raster, _: Region| Ok(raster);
    let manifest = import_files(&images, p.channels, Transform::whole(&keep), &spec.out_dir, reporter)?;
    Ok(metrics(&manifest))
}

/// The `mnist` kind's parameters (`stdlib/data.msnr`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MnistParams {
    /// How many digits to take, from the start.
    pub count: usize,
}

impl KindParams for MnistParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let max = i64::try_from(mnist::COUNT).expect("5000 fits");
        let count = r.int("count", 1..=max)?;
        Some(Self { count: usize::try_from(count).ok()? })
    }

    fn shape(&self, _: &Reader<'_>) -> Shape {
        let side = u32::try_from(mnist::SIDE).ok();
        Shape::images(Some(1), side.map(|s| (s, s)))
    }
}

/// `kind mnist -> dataset { count: int = 5000 }`: the first `count` bundled
/// digits as a `[1, 28, 28]` u8 dataset with classes `0`..`9`.
///
/// # Errors
/// When the output cannot be written.
pub fn run_mnist(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let count = spec.typed::<MnistParams>()?.count;
    let (pixels, labels) = mnist::load(count)?;
    let classes = mnist::CLASSES.map(String::from).to_vec();
    let mut writer = DatasetWriter::create(&spec.out_dir, [1, mnist::SIDE, mnist::SIDE], DType::U8, classes)?;
    for (digit, label) in pixels.chunks_exact(mnist::SIDE * mnist::SIDE).zip(labels) {
        writer.push(digit, label)?;
    }
    let manifest = writer.finish()?;
    reporter.progress(count as u64, count as u64, "digits");
    Ok(metrics(&manifest))
}

/// Parameter `name` as a channel count: 1 (Pillow mode L) or 3 (RGB).
pub fn read_channels(r: &mut Reader<'_>, name: &str) -> Option<usize> {
    match r.int(name, ..)? {
        1 => Some(1),
        3 => Some(3),
        other => r.fail(ParamError::new(name, format!("must be 1 (grayscale, L) or 3 (RGB), got {other}"))),
    }
}

/// The metrics every dataset-producing stage records.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn metrics(manifest: &Manifest) -> StageResult {
    let mut result = StageResult::default();
    result.metrics.insert("images".into(), manifest.count as f64);
    result.metrics.insert("classes".into(), manifest.classes.len() as f64);
    result
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use image::{GrayImage, RgbImage};

    use super::*;
    use crate::data::Dataset;
    use crate::lang::Value;
    use crate::stages::spec::Silent;

    fn spec(kind: &str, out: &Path, params: &[(&str, Value)]) -> StageSpec {
        StageSpec::standalone(kind, params.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(), out, out)
    }

    fn images_spec(root: &Path, out: &Path, channels: i64) -> StageSpec {
        spec("images", out, &[("path", Value::Path(root.to_owned())), ("channels", Value::Int(channels))])
    }

    fn save_rgb(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(w, h, image::Rgb(rgb)).save(path).unwrap();
    }

    #[test]
    #[allow(clippy::float_cmp)] // integer-valued metrics
    fn imports_classes_in_sorted_order_as_chw() {
        let dir = tempfile::tempdir().unwrap();
        let (root, out) = (dir.path().join("in"), dir.path().join("out"));
        save_rgb(&root.join("zebra/1.png"), 2, 2, [1, 2, 3]);
        save_rgb(&root.join("ant/1.png"), 2, 2, [10, 200, 30]);
        let result = run(&images_spec(&root, &out, 3), &Silent).unwrap();
        assert_eq!(result.metrics, BTreeMap::from([("classes".into(), 2.0), ("images".into(), 2.0)]));
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.manifest().classes, vec!["ant", "zebra"]);
        let (images, labels) = ds.read_all().unwrap();
        assert_eq!(labels, vec![0, 1]);
        assert_eq!(&images.as_u8().unwrap()[..12], &[10, 10, 10, 10, 200, 200, 200, 200, 30, 30, 30, 30]);
    }

    #[test]
    fn channels_one_applies_pillow_luma_and_keeps_gray() {
        let dir = tempfile::tempdir().unwrap();
        let (root, out) = (dir.path().join("in"), dir.path().join("out"));
        save_rgb(&root.join("a.png"), 1, 1, [10, 200, 30]);
        GrayImage::from_pixel(1, 1, image::Luma([42])).save(root.join("b.png")).unwrap();
        run(&images_spec(&root, &out, 1), &Silent).unwrap();
        let (images, _) = Dataset::open(&out).unwrap().read_all().unwrap();
        assert_eq!(images.as_u8().unwrap(), &[124, 42]);
    }

    #[test]
    fn size_mismatch_names_the_file_and_suggests_crop() {
        let dir = tempfile::tempdir().unwrap();
        let (root, out) = (dir.path().join("in"), dir.path().join("out"));
        save_rgb(&root.join("a.png"), 4, 4, [0; 3]);
        save_rgb(&root.join("b.jpg"), 4, 3, [0; 3]);
        let err = run(&images_spec(&root, &out, 3), &Silent).unwrap_err().to_string();
        assert!(err.contains("b.jpg: image is 4x3, but ") && err.contains("a.png is 4x4"), "{err}");
        assert!(err.contains("`crop`"), "{err}");
    }

    #[test]
    fn corrupt_file_fails_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (root, out) = (dir.path().join("in"), dir.path().join("out"));
        save_rgb(&root.join("a.png"), 4, 4, [0; 3]);
        std::fs::write(root.join("broken.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
        let err = run(&images_spec(&root, &out, 3), &Silent).unwrap_err().to_string();
        assert!(err.contains("broken.jpg") && err.contains("cannot decode"), "{err}");
    }

    #[test]
    fn reads_an_upstream_stage_output_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, out) = (dir.path().join("raw"), dir.path().join("out"));
        save_rgb(&raw.join("faces/1.png"), 3, 2, [5, 6, 7]);
        let mut spec = spec("images", &out, &[("path", Value::Stage("raw".into())), ("channels", Value::Int(3))]);
        spec.inputs.insert("raw".into(), raw);
        run(&spec, &Silent).unwrap();
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(
            (ds.manifest().classes.clone(), ds.manifest().width, ds.manifest().height),
            (vec!["faces".into()], 3, 2)
        );
        spec.inputs.clear();
        let err = run(&spec, &Silent).unwrap_err().to_string();
        assert_eq!(err, "input stage `raw` was not provided");
    }

    #[test]
    fn bad_channels_name_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(&images_spec(dir.path(), dir.path(), 2), &Silent).unwrap_err().to_string();
        assert_eq!(err, "parameter `channels`: must be 1 (grayscale, L) or 3 (RGB), got 2");
    }

    #[test]
    fn mnist_count_bounds_name_the_parameter() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [0, 5001, -3] {
            let err = run_mnist(&spec("mnist", dir.path(), &[("count", Value::Int(bad))]), &Silent).unwrap_err();
            assert!(err.to_string().starts_with("parameter `count`: must be in [1, 5000]"), "{err}");
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // integer-valued metrics
    fn mnist_writes_a_digit_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let result = run_mnist(&spec("mnist", dir.path(), &[("count", Value::Int(30))]), &Silent).unwrap();
        assert_eq!(result.metrics["images"], 30.0);
        let ds = Dataset::open(dir.path()).unwrap();
        let m = ds.manifest();
        assert_eq!((m.count, m.channels, m.height, m.width, m.classes.len()), (30, 1, 28, 28, 10));
        assert_eq!(ds.read_all().unwrap().1[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    }
}
