//! [`DatasetWriter`]: appends items one at a time and writes a safetensors shard
//! each time about [`SHARD_BYTES`] of images have gathered.

use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;

use super::error::DataError;
use super::manifest::{DType, Manifest, ShardInfo};

/// Target size of one shard's `images` tensor.
pub const SHARD_BYTES: usize = 64 << 20;

/// Writes a dataset folder: `push` items, then `finish` to write the manifest.
pub struct DatasetWriter {
    dir: PathBuf,
    manifest: Manifest,
    shard_items: usize,
    images: Vec<u8>,
    labels: Vec<i64>,
}

impl DatasetWriter {
    /// Starts a dataset of `[channels, height, width]` items in `dir` (created if missing).
    ///
    /// # Errors
    /// When the shape has a zero dimension, `classes` is empty, or `dir` cannot be created.
    pub fn create(dir: &Path, shape: [usize; 3], dtype: DType, classes: Vec<String>) -> Result<Self, DataError> {
        let manifest = Manifest::new(shape, dtype, classes);
        manifest.validate().map_err(DataError::Usage)?;
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let shard_items = (SHARD_BYTES / manifest.item_bytes()).max(1);
        Ok(Self { dir: dir.to_owned(), manifest, shard_items, images: Vec::new(), labels: Vec::new() })
    }

    /// Caps each shard at `items` items (tests use tiny shards).
    #[must_use]
    pub fn with_shard_items(mut self, items: usize) -> Self {
        self.shard_items = items.max(1);
        self
    }

    /// The manifest as written so far.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Appends one item: `image` holds its `c * h * w` elements in CHW order as
    /// little-endian bytes of the dataset's dtype; `label` indexes the classes.
    ///
    /// # Errors
    /// When the length or label is wrong, or a full shard cannot be written.
    pub fn push(&mut self, image: &[u8], label: i64) -> Result<(), DataError> {
        let manifest = &self.manifest;
        if image.len() != manifest.item_bytes() {
            let (len, expected) = (image.len(), manifest.item_bytes());
            let shape = [manifest.channels, manifest.height, manifest.width];
            return Err(DataError::Usage(format!("item of {len} bytes, expected {expected} ({shape:?})")));
        }
        let classes = manifest.classes.len();
        if usize::try_from(label).map_or(true, |l| l >= classes) {
            return Err(DataError::Usage(format!("label {label} outside 0..{classes}")));
        }
        if self.images.is_empty() {
            // The whole shard at once: growing by doubling would copy it about twice over.
            self.images.reserve_exact(self.shard_items * image.len());
        }
        self.images.extend_from_slice(image);
        self.labels.push(label);
        if self.labels.len() >= self.shard_items {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends one `f32` item (CHW order).
    ///
    /// # Errors
    /// As [`push`](Self::push), and when the dataset's dtype is not `f32`.
    pub fn push_f32(&mut self, image: &[f32], label: i64) -> Result<(), DataError> {
        if self.manifest.dtype != DType::F32 {
            return Err(DataError::Usage("push_f32 on a dataset whose dtype is not f32".into()));
        }
        let bytes: Vec<u8> = image.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push(&bytes, label)
    }

    /// Writes the last shard and the manifest.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn finish(mut self) -> Result<Manifest, DataError> {
        self.flush()?;
        self.manifest.save(&self.dir)?;
        Ok(self.manifest)
    }

    fn flush(&mut self) -> Result<(), DataError> {
        let n = self.labels.len();
        if n == 0 {
            return Ok(());
        }
        let file = format!("shard-{:05}.safetensors", self.manifest.shards.len());
        let path = self.dir.join(&file);
        write_shard(&path, &self.manifest, &self.images, &self.labels)?;
        self.manifest.shards.push(ShardInfo { file, count: n });
        self.manifest.count += n;
        self.images.clear();
        self.labels.clear();
        Ok(())
    }
}

/// Writes one shard file holding `images` `[n, c, h, w]` and `labels` `[n]`.
fn write_shard(path: &Path, m: &Manifest, images: &[u8], labels: &[i64]) -> Result<(), DataError> {
    let invalid = |e: safetensors::SafeTensorError| DataError::invalid(path, e.to_string());
    let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let shape = vec![labels.len(), m.channels, m.height, m.width];
    let images = TensorView::new(m.dtype.safetensors(), shape, images).map_err(invalid)?;
    let labels = TensorView::new(safetensors::Dtype::I64, vec![labels.len()], &label_bytes).map_err(invalid)?;
    safetensors::serialize_to_file([("images", images), ("labels", labels)], None, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => DataError::io(path, io),
        other => invalid(other),
    })
}
