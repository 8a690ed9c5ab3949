//! The `crop` stage: image files or an image dataset become a `size x size`
//! dataset by a crop recipe (`ScoreSDE`'s `CelebA` crop or ADM's `center_crop_arr`),
//! in parallel, matching the reference code (`TensorFlow` for `ScoreSDE`, Pillow for ADM).

use std::path::Path;

use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use super::images::{metrics, read_channels};
use super::kinds::KindParams;
use super::params::{ParamError, Reader, Shape, Source};
use super::spec::{Reporter, StageError, StageResult, StageSpec};
use crate::data::import::{import_files, Apply, Item, Transform, UniformSink};
use crate::data::recipe::CropRecipe;
use crate::data::{folder, DType, DataError, Dataset, Manifest, Raster, Region};

/// The largest accepted output side.
pub const MAX_SIZE: usize = 16384;

/// The `crop` kind's parameters (`stdlib/data.msnr`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CropParams {
    /// The images: a folder (`files`) or a dataset stage.
    pub images: Source,
    /// The published recipe.
    pub recipe: CropRecipe,
    /// Side of the output squares.
    pub size: usize,
    /// Channels when decoding image files: 1 (L) or 3 (RGB).
    pub channels: usize,
}

impl KindParams for CropParams {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let images = r.source("images");
        let recipe = read_recipe(r);
        let size = r.int("size", 1..=i64::try_from(MAX_SIZE).expect("fits"));
        let channels = read_channels(r, "channels");
        Some(Self { images: images?, recipe: recipe?, size: usize::try_from(size?).ok()?, channels: channels? })
    }

    fn shape(&self, r: &Reader<'_>) -> Shape {
        let side = u32::try_from(self.size).ok();
        let channels = r.input_shape("images").channels.or(u32::try_from(self.channels).ok());
        Shape::images(channels, side.map(|s| (s, s)))
    }
}

/// `recipe = scoresde { center = N }` or `adm {}`.
fn read_recipe(r: &mut Reader<'_>) -> Option<CropRecipe> {
    let c = r.ctor("recipe")?;
    match c.name {
        "scoresde" => {
            let center = r.arg_int(c, "center", 1..=i64::try_from(MAX_SIZE).expect("fits"))?;
            Some(CropRecipe::ScoreSde { center: usize::try_from(center).ok()? })
        }
        "adm" => Some(CropRecipe::Adm),
        other => r.fail(ParamError::new("recipe", format!("unknown crop recipe `{other}`"))),
    }
}

/// `kind crop -> dataset { images: files | dataset, recipe: crop_recipe = scoresde { center = 140 }, size: int,
/// channels: int = 3 }`. Files are decoded to RGB, or to L when `channels` is 1;
/// a dataset keeps its channels and labels.
///
/// # Errors
/// An unreadable or corrupt image, or an image too small for the recipe (named).
pub fn run(spec: &StageSpec, reporter: &dyn Reporter) -> Result<StageResult, StageError> {
    let CropParams { images, recipe, size, channels } = spec.typed()?;
    let apply = move |raster: Raster, region: Region| recipe.apply(&raster, region, size);
    let window = move |width, height| recipe.window(width, height, size);
    let source = spec.source_dir(&images)?;
    let manifest = if Dataset::is_dataset(&source) {
        crop_dataset(&Dataset::open(&source)?, &apply, &spec.out_dir, reporter)?
    } else {
        let item_bytes = Some(size * size * channels);
        let transform = Transform { window: &window, apply: &apply, item_bytes };
        let images = folder::scan(&source)?;
        if let Some(warning) = images.dropped_warning(&source) {
            reporter.log(&warning);
        }
        import_files(&images, channels, transform, &spec.out_dir, reporter)?
    };
    Ok(metrics(&manifest))
}

/// Applies `transform` to every item of an 8-bit L or RGB dataset, shard by shard.
fn crop_dataset(
    dataset: &Dataset,
    transform: Apply<'_>,
    out_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<Manifest, DataError> {
    let m = dataset.manifest();
    if m.dtype != DType::U8 || !matches!(m.channels, 1 | 3) {
        let what = format!("{:?} with {} channels", m.dtype, m.channels);
        return Err(DataError::invalid(
            dataset.dir(),
            format!("crop needs an 8-bit L or RGB image dataset, not {what}"),
        ));
    }
    let mut sink = UniformSink::new(out_dir, m.classes.clone(), m.count);
    let mut done = 0;
    for i in 0..m.shards.len() {
        let shard = dataset.read_shard(i)?;
        let pixels = shard.images.as_u8().expect("dtype checked above");
        let items: Vec<Result<Item, DataError>> = pixels
            .par_chunks_exact(m.item_len())
            .enumerate()
            .map(|(j, chw)| {
                let raster = Raster::from_chw(chw, m.channels, m.height, m.width);
                let item = done + j;
                transform(raster, Region::whole(m.width, m.height))
                    .map(Item::from)
                    .map_err(|e| DataError::invalid(dataset.dir(), format!("item {item}: {e}")))
            })
            .collect();
        for (item, label) in items.into_iter().zip(shard.labels) {
            sink.push(dataset.dir(), &item?, label)?;
        }
        done += m.shards[i].count;
        reporter.progress(done as u64, m.count as u64, "images");
    }
    sink.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lang::Value;
    use crate::stages::spec::Silent;

    fn spec(images: Value, out: &Path, recipe: Value, size: i64) -> StageSpec {
        let params = BTreeMap::from([
            ("images".into(), images),
            ("recipe".into(), recipe),
            ("size".into(), Value::Int(size)),
            ("channels".into(), Value::Int(3)),
        ]);
        StageSpec::standalone("crop", params, out, out)
    }

    fn scoresde(center: i64) -> Value {
        Value::Ctor { name: "scoresde".into(), args: BTreeMap::from([("center".into(), Value::Int(center))]) }
    }

    #[test]
    #[allow(clippy::float_cmp)] // integer-valued metrics
    fn crops_a_dataset_keeping_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        let classes = vec!["a".into(), "b".into()];
        let mut w = crate::data::DatasetWriter::create(&src, [1, 6, 6], DType::U8, classes).unwrap();
        w.push(&[50; 36], 1).unwrap();
        w.push(&[90; 36], 0).unwrap();
        w.finish().unwrap();
        let result = run(&spec(Value::Path(src), &out, scoresde(4), 2), &Silent).unwrap();
        assert_eq!(result.metrics["images"], 2.0);
        let (images, labels) = Dataset::open(&out).unwrap().read_all().unwrap();
        assert_eq!((images.as_u8().unwrap(), labels), (&[50, 50, 50, 50, 90, 90, 90, 90][..], vec![1, 0]));
    }

    #[test]
    fn too_small_image_and_bad_size_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        std::fs::create_dir(&src).unwrap();
        image::RgbImage::new(100, 90).save(src.join("small.png")).unwrap();
        let err = run(&spec(Value::Path(src.clone()), &out, scoresde(140), 64), &Silent).unwrap_err().to_string();
        assert!(err.contains("small.png: image is 100x90, smaller than the center crop 140x140"), "{err}");
        let err = run(&spec(Value::Path(src), &out, scoresde(140), 0), &Silent).unwrap_err().to_string();
        assert_eq!(err, "parameter `size`: must be in [1, 16384], got 0");
    }
}
