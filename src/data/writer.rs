//! [`DatasetWriter`]: appends items one at a time and writes a safetensors shard
//! each time about [`SHARD_BYTES`] of images have gathered, or, when it is told how many
//! items will come, streams each shard to its file as they arrive ([`stream`]).

mod stream;

use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;

use super::error::DataError;
use super::manifest::{DType, Manifest, ShardInfo};
use stream::ShardStream;

/// Target size of one shard's `images` tensor.
pub const SHARD_BYTES: usize = 64 << 20;

/// Writes a dataset folder: `push` items, then `finish` to write the manifest.
pub struct DatasetWriter {
    dir: PathBuf,
    manifest: Manifest,
    shard_items: usize,
    images: Vec<u8>,
    labels: Vec<i64>,
    /// The number of items announced ([`Self::expecting`]), if any.
    expected: Option<usize>,
    /// The shard being streamed, when the count is known.
    stream: Option<ShardStream>,
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
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            shard_items,
            images: Vec::new(),
            labels: Vec::new(),
            expected: None,
            stream: None,
        })
    }

    /// Announces that exactly `count` items will be pushed: each shard is then written to its
    /// file as its items arrive (same bytes), and [`Self::finish`] checks the count.
    #[must_use]
    pub fn expecting(mut self, count: usize) -> Self {
        self.expected = Some(count);
        self
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
        if let Some(expected) = self.expected {
            return self.push_streamed(image, label, expected);
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

    /// [`Self::push`] when `expected` items were announced.
    fn push_streamed(&mut self, image: &[u8], label: i64, expected: usize) -> Result<(), DataError> {
        if self.stream.is_none() {
            let left = expected.saturating_sub(self.manifest.count);
            if left == 0 {
                return Err(DataError::Usage(format!("more than the {expected} items announced")));
            }
            let path = self.dir.join(self.next_shard_file());
            self.stream = Some(ShardStream::create(&path, &self.manifest, left.min(self.shard_items))?);
        }
        if self.stream.as_mut().expect("opened above").push(image, label)? {
            let count = self.stream.take().expect("a shard is open").finish()?;
            let file = self.next_shard_file();
            self.manifest.shards.push(ShardInfo { file, count });
            self.manifest.count += count;
        }
        Ok(())
    }

    /// The file name of the next shard.
    fn next_shard_file(&self) -> String {
        format!("shard-{:05}.safetensors", self.manifest.shards.len())
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
    /// When a file cannot be written, or fewer items came than were announced.
    pub fn finish(mut self) -> Result<Manifest, DataError> {
        if let Some(expected) = self.expected {
            let got = self.manifest.count + self.stream.as_ref().map_or(0, ShardStream::len);
            if got != expected {
                return Err(DataError::Usage(format!("{expected} items were announced, {got} came")));
            }
        }
        self.flush()?;
        self.manifest.save(&self.dir)?;
        Ok(self.manifest)
    }

    fn flush(&mut self) -> Result<(), DataError> {
        let n = self.labels.len();
        if n == 0 {
            return Ok(());
        }
        let file = self.next_shard_file();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of a dataset folder, by name.
    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn streamed_shards_have_the_bytes_of_whole_ones() {
        for (dtype, shape, per_item) in [(DType::U8, [3, 2, 5], 30), (DType::F32, [2, 1, 3], 24)] {
            let classes = vec!["a".into(), "b".into(), "c".into()];
            let items: Vec<(Vec<u8>, i64)> = (0..7_u8)
                .map(|i| ((0..per_item).map(|k| i.wrapping_mul(31).wrapping_add(k)).collect(), i64::from(i % 3)))
                .collect();
            let (whole, streamed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            for (dir, expecting) in [(whole.path(), None), (streamed.path(), Some(7))] {
                let mut w = DatasetWriter::create(dir, shape, dtype, classes.clone()).unwrap().with_shard_items(3);
                if let Some(n) = expecting {
                    w = w.expecting(n);
                }
                for (image, label) in &items {
                    w.push(image, *label).unwrap();
                }
                let m = w.finish().unwrap();
                assert_eq!((m.count, m.shards.len()), (7, 3));
            }
            let (whole, streamed) = (files(whole.path()), files(streamed.path()));
            assert_eq!(whole.len(), 4, "three shards and the manifest");
            assert_eq!(whole, streamed, "{dtype:?}");
        }
    }

    #[test]
    fn a_streamed_dataset_gets_exactly_the_announced_items() {
        let dir = tempfile::tempdir().unwrap();
        let create = || DatasetWriter::create(dir.path(), [1, 1, 2], DType::U8, vec!["a".into()]).unwrap();
        let mut w = create().with_shard_items(2).expecting(3);
        for _ in 0..3 {
            w.push(&[1, 2], 0).unwrap();
        }
        let err = w.push(&[1, 2], 0).unwrap_err().to_string();
        assert!(err.contains("more than the 3 items announced"), "{err}");
        let mut w = create().with_shard_items(2).expecting(3);
        w.push(&[1, 2], 0).unwrap();
        w.push(&[1, 2], 0).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("3 items were announced, 2 came"), "{err}");
        let mut w = create().expecting(3);
        w.push(&[1, 2], 0).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("3 items were announced, 1 came"), "{err}");
    }
}
