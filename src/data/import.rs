//! The image-import pipeline shared by the `images` and `crop` stages: decode
//! and transform files in parallel (rayon), in file order, in bounded chunks,
//! and append them to a [`DatasetWriter`] that checks they share one size.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::convert::decode_window;
use super::error::DataError;
use super::folder::ImageFolder;
use super::manifest::{DType, Manifest};
use super::raster::{Raster, Region, Window};
use super::writer::DatasetWriter;
use crate::stages::Reporter;

/// Files decoded in parallel between two writes, at most (bounds memory on big folders).
pub const CHUNK: usize = 256;

/// About how many bytes of transformed items a chunk holds: fewer files per chunk when items
/// are big (two chunks are in memory at a time).
pub const CHUNK_BYTES: usize = 256 << 20;

/// A per-image step after decoding (a crop recipe), given the raster and where it lies in its
/// image; `Err` is a message about that image.
pub type Apply<'a> = &'a (dyn Fn(Raster, Region) -> Result<Raster, String> + Sync);

/// Which part of a `width x height` image a step reads, if not all of it.
pub type Want<'a> = &'a (dyn Fn(usize, usize) -> Option<Window> + Sync);

/// A per-image step and the part of each image it reads: decoders give `apply` that window
/// (JPEGs decode no more than it) or, where they cannot, the whole image, with its [`Region`].
#[derive(Clone, Copy)]
pub struct Transform<'a> {
    /// The window of a `width x height` image the step reads (`None`: all of it).
    pub window: Want<'a>,
    /// The step.
    pub apply: Apply<'a>,
    /// The bytes of each transformed item, when known before decoding (a crop's output size).
    pub item_bytes: Option<usize>,
}

impl<'a> Transform<'a> {
    /// A step that reads whole images.
    #[must_use]
    pub fn whole(apply: Apply<'a>) -> Self {
        Self { window: &|_, _| None, apply, item_bytes: None }
    }
}

/// One transformed image, already in the dataset's CHW layout.
pub struct Item {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Channels.
    pub channels: usize,
    /// The pixels, CHW.
    pub chw: Vec<u8>,
}

impl From<Raster> for Item {
    fn from(r: Raster) -> Self {
        Self { width: r.width, height: r.height, channels: r.channels, chw: r.to_chw() }
    }
}

/// Decodes every file of `folder` to `channels` channels (only the window `transform`
/// reads), applies `transform`, and writes the dataset into `out_dir`.
///
/// # Errors
/// The first failing file in folder order (unreadable, corrupt, rejected by
/// `transform`, or of another size than the first image), named.
///
/// # Panics
/// Never: each chunk is decoded before it is written.
pub fn import_files(
    folder: &ImageFolder,
    channels: usize,
    transform: Transform<'_>,
    out_dir: &Path,
    reporter: &dyn Reporter,
) -> Result<Manifest, DataError> {
    let Transform { window, apply, item_bytes } = transform;
    let total = folder.files.len() as u64;
    let mut sink = UniformSink::new(out_dir, folder.classes.clone(), folder.files.len());
    // Items all share one size: the transform's, or the first image's (its header alone read).
    let item_bytes = item_bytes.or_else(|| {
        let (path, _) = folder.files.first()?;
        let (w, h) = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?.into_dimensions().ok()?;
        Some((w as usize) * (h as usize) * channels)
    });
    let len = chunk_len(item_bytes);
    let chunks: Vec<&[(PathBuf, i64)]> = folder.files.chunks(len).collect();
    let decode_chunk = |chunk: &[(PathBuf, i64)]| -> Vec<Result<Item, DataError>> {
        chunk
            .par_iter()
            .map(|(path, _)| {
                let (raster, region) = decode_window(path, channels, window)?;
                apply(raster, region).map(Item::from).map_err(|message| DataError::invalid(path, message))
            })
            .collect()
    };
    // Decode chunk i + 1 while chunk i is written: the writer is sequential.
    let mut decoded = chunks.first().map(|c| decode_chunk(c));
    for (i, chunk) in chunks.iter().enumerate() {
        let items = decoded.take().expect("decoded ahead");
        let (next, written) = rayon::join(
            || chunks.get(i + 1).map(|c| decode_chunk(c)),
            || -> Result<(), DataError> {
                for ((path, label), item) in chunk.iter().zip(items) {
                    sink.push(path, &item?, *label)?;
                }
                Ok(())
            },
        );
        written?;
        decoded = next;
        reporter.progress((i * len + chunk.len()) as u64, total, "images");
    }
    sink.finish()
}

/// Files per chunk for items of `item_bytes` (unknown: [`CHUNK`]).
fn chunk_len(item_bytes: Option<usize>) -> usize {
    item_bytes.map_or(CHUNK, |bytes| (CHUNK_BYTES / bytes.max(1)).clamp(1, CHUNK))
}

/// A dataset writer created on the first item, refusing items of another shape.
pub struct UniformSink {
    out_dir: PathBuf,
    classes: Vec<String>,
    count: usize,
    first: Option<(PathBuf, DatasetWriter)>,
}

impl UniformSink {
    /// A sink writing a `u8` dataset of `count` items with `classes` into `out_dir` (each shard
    /// goes to its file as its items come, see [`DatasetWriter::expecting`]).
    #[must_use]
    pub fn new(out_dir: &Path, classes: Vec<String>, count: usize) -> Self {
        Self { out_dir: out_dir.to_owned(), classes, count, first: None }
    }

    /// Appends `item`, read from `source` (named in errors), with `label`.
    ///
    /// # Errors
    /// When its size differs from the first item's, or the write fails.
    pub fn push(&mut self, source: &Path, item: &Item, label: i64) -> Result<(), DataError> {
        let (first, writer) = if let Some(slot) = &mut self.first {
            slot
        } else {
            let shape = [item.channels, item.height, item.width];
            let writer =
                DatasetWriter::create(&self.out_dir, shape, DType::U8, self.classes.clone())?.expecting(self.count);
            self.first.insert((source.to_owned(), writer))
        };
        let m = writer.manifest();
        if (item.width, item.height) != (m.width, m.height) {
            let (w, h, ew, eh, f) = (item.width, item.height, m.width, m.height, first.display());
            let hint = "all images must share one size; use the `crop` stage to make them uniform";
            return Err(DataError::invalid(source, format!("image is {w}x{h}, but {f} is {ew}x{eh}: {hint}")));
        }
        writer.push(&item.chw, label)
    }

    /// Writes the last shard and the manifest.
    ///
    /// # Errors
    /// When nothing was pushed or a write fails.
    pub fn finish(self) -> Result<Manifest, DataError> {
        match self.first {
            Some((_, writer)) => writer.finish(),
            None => Err(DataError::invalid(&self.out_dir, "no images to write")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_shrink_for_big_items() {
        assert_eq!(chunk_len(Some(64 * 64 * 3)), CHUNK);
        assert_eq!(chunk_len(None), CHUNK);
        assert_eq!(chunk_len(Some(4000 * 3000 * 3)), 7, "36 MB photos: 7 a chunk");
        assert_eq!(chunk_len(Some(16384 * 16384 * 3)), 1);
        assert_eq!(chunk_len(Some(0)), CHUNK);
    }
}
