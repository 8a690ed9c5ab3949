//! [`Dataset`]: opens a dataset folder, checks every shard's header against the
//! manifest up front, and reads shards into plain NCHW buffers. A dataset in the store is
//! checked against its entry's file records as it is read: the manifest and every shard's
//! size on open, each shard's hash when it is read (see [`crate::cache::StoredFiles`]).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Metadata, SafeTensors, TensorInfo};

use super::error::DataError;
use super::manifest::{DType, Manifest};
use crate::cache::{CacheError, StoredFiles};

/// The `images` of a shard or dataset, contiguous NCHW.
#[derive(Clone, Debug, PartialEq)]
pub enum Images {
    /// Pixels 0..=255.
    U8(Vec<u8>),
    /// Floats (latents).
    F32(Vec<f32>),
}

impl Images {
    /// Elements held.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }

    /// Whether no element is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pixels, when the dtype is `u8`.
    #[must_use]
    pub fn as_u8(&self) -> Option<&[u8]> {
        match self {
            Self::U8(v) => Some(v),
            Self::F32(_) => None,
        }
    }

    /// The floats, when the dtype is `f32`.
    #[must_use]
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Self::F32(v) => Some(v),
            Self::U8(_) => None,
        }
    }

    fn extend(&mut self, other: Self) {
        match (self, other) {
            (Self::U8(a), Self::U8(b)) => a.extend(b),
            (Self::F32(a), Self::F32(b)) => a.extend(b),
            _ => unreachable!("shards of one dataset share its dtype (checked on open)"),
        }
    }
}

/// One shard's content.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    /// `[n, c, h, w]` items.
    pub images: Images,
    /// `[n]` labels, each indexing the manifest's classes.
    pub labels: Vec<i64>,
}

/// One shard mapped into memory for random access to its items (the streaming loader's
/// view): pages are read from the file as items are touched, never all at once.
#[derive(Debug)]
pub struct MappedShard {
    path: PathBuf,
    mmap: Mmap,
    /// The byte range of the `images` tensor in the file.
    images: Range<usize>,
    item_bytes: usize,
}

impl MappedShard {
    /// The shard's file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Items in the shard.
    #[must_use]
    pub fn len(&self) -> usize {
        self.images.len() / self.item_bytes.max(1)
    }

    /// Whether the shard holds no item.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per item.
    #[must_use]
    pub fn item_bytes(&self) -> usize {
        self.item_bytes
    }

    /// The stored bytes of item `i` (little-endian elements, `[c, h, w]`).
    ///
    /// # Panics
    /// When `i` is not below [`MappedShard::len`].
    #[must_use]
    pub fn item(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "item {i} of a shard of {}", self.len());
        let start = self.images.start + i * self.item_bytes;
        &self.mmap[start..start + self.item_bytes]
    }
}

/// An opened, validated dataset folder.
#[derive(Clone, Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    /// The file records of the store entry the dataset lies in, if any.
    stored: Option<StoredFiles>,
}

impl Dataset {
    /// Opens `dir`, validating the manifest and every shard's header.
    ///
    /// # Errors
    /// When the manifest or a shard is missing or disagrees with the manifest;
    /// the message names the file.
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let stored = StoredFiles::of(dir);
        if let Some(stored) = &stored {
            stored.check_file(&dir.join(super::manifest::MANIFEST_FILE)).map_err(corrupted)?;
        }
        let manifest = Manifest::load(dir)?;
        let dataset = Self { dir: dir.to_owned(), manifest, stored };
        for i in 0..dataset.manifest.shards.len() {
            if let Some(stored) = &dataset.stored {
                stored.check_stat(&dataset.dir.join(&dataset.manifest.shards[i].file)).map_err(corrupted)?;
            }
            let (path, mmap) = dataset.map_shard(i)?;
            let (_, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| DataError::invalid(&path, e.to_string()))?;
            dataset.check_header(i, &meta).map_err(|message| DataError::invalid(&path, message))?;
        }
        Ok(dataset)
    }

    /// Whether `dir` holds a dataset manifest (to tell a dataset from a folder of images).
    #[must_use]
    pub fn is_dataset(dir: &Path) -> bool {
        dir.join(super::manifest::MANIFEST_FILE).is_file()
    }

    /// The folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads shard `i`.
    ///
    /// # Errors
    /// When the file cannot be read or holds a label outside the classes.
    pub fn read_shard(&self, i: usize) -> Result<Shard, DataError> {
        let (path, mmap) = self.map_shard(i)?;
        if let Some(stored) = &self.stored {
            stored.check_bytes(&path, &mmap).map_err(corrupted)?;
        }
        let tensors = SafeTensors::deserialize(&mmap).map_err(|e| DataError::invalid(&path, e.to_string()))?;
        let get = |name: &str| tensors.tensor(name).map_err(|e| DataError::invalid(&path, e.to_string()));
        let data = get("images")?.data();
        let images = match self.manifest.dtype {
            DType::U8 => Images::U8(data.to_vec()),
            DType::F32 => {
                Images::F32(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
        };
        let labels = self.labels_of(&path, get("labels")?.data())?;
        Ok(Shard { images, labels })
    }

    /// Maps shard `i` for random access to its items, checked as [`Dataset::read_shard`]
    /// checks it (its stored hash, its labels), and reads its labels.
    ///
    /// # Errors
    /// When the file cannot be read, is damaged, or holds a label outside the classes.
    ///
    /// # Panics
    /// Never: the header's tensors are checked before their ranges are taken.
    pub fn map_shard_items(&self, i: usize) -> Result<(MappedShard, Vec<i64>), DataError> {
        if let Some(stored) = &self.stored {
            // Hashing reads every page: a mapping of its own, dropped after, so that the
            // pages do not stay counted against this process.
            let (path, mmap) = self.map_shard(i)?;
            stored.check_bytes(&path, &mmap).map_err(corrupted)?;
        }
        let (path, mmap) = self.map_shard(i)?;
        // Items are read at random: no read-around of the pages next to each (a 3 KiB item
        // would otherwise bring in 128 KiB from disk).
        mmap.advise(memmap2::Advice::Random).map_err(|e| DataError::io(&path, e))?;
        let (header, meta) = SafeTensors::read_metadata(&mmap).map_err(|e| DataError::invalid(&path, e.to_string()))?;
        self.check_header(i, &meta).map_err(|message| DataError::invalid(&path, message))?;
        let range = |name: &str| {
            let (start, end) = meta.info(name).expect("checked by check_header").data_offsets;
            let base = 8 + header; // the header's length, then the header
            base + start..base + end
        };
        let labels = self.labels_of(&path, &mmap[range("labels")])?;
        let shard = MappedShard { path, images: range("images"), item_bytes: self.manifest.item_bytes(), mmap };
        Ok((shard, labels))
    }

    /// The labels stored in `bytes` (int64 little-endian), each checked against the classes.
    fn labels_of(&self, path: &Path, bytes: &[u8]) -> Result<Vec<i64>, DataError> {
        let labels: Vec<i64> = bytes.chunks_exact(8).map(le_i64).collect();
        let classes = self.manifest.classes.len();
        if let Some(bad) = labels.iter().find(|&&l| usize::try_from(l).map_or(true, |l| l >= classes)) {
            return Err(DataError::invalid(path, format!("label {bad} outside the {classes} classes")));
        }
        Ok(labels)
    }

    /// Reads every shard into one buffer of `[count, c, h, w]` items and one of labels.
    ///
    /// # Errors
    /// As [`read_shard`](Self::read_shard).
    pub fn read_all(&self) -> Result<(Images, Vec<i64>), DataError> {
        let n = self.manifest.count * self.manifest.item_len();
        let mut images = match self.manifest.dtype {
            DType::U8 => Images::U8(Vec::with_capacity(n)),
            DType::F32 => Images::F32(Vec::with_capacity(n)),
        };
        let mut labels = Vec::with_capacity(self.manifest.count);
        for i in 0..self.manifest.shards.len() {
            let shard = self.read_shard(i)?;
            images.extend(shard.images);
            labels.extend(shard.labels);
        }
        Ok((images, labels))
    }

    fn map_shard(&self, i: usize) -> Result<(PathBuf, Mmap), DataError> {
        let path = self.dir.join(&self.manifest.shards[i].file);
        let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        // SAFETY: the store never rewrites a finished artifact in place; a
        // concurrent truncation would at worst fault this read-only process.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))?;
        Ok((path, mmap))
    }

    fn check_header(&self, i: usize, meta: &Metadata) -> Result<(), String> {
        let m = &self.manifest;
        let n = m.shards[i].count;
        check_tensor(meta.info("images"), "images", m.dtype.safetensors(), &[n, m.channels, m.height, m.width])?;
        check_tensor(meta.info("labels"), "labels", safetensors::Dtype::I64, &[n])
    }
}

/// A stored file found damaged, as a data error naming the file.
fn corrupted(e: CacheError) -> DataError {
    let message = e.to_string();
    match e {
        CacheError::Corrupted { file, .. } => {
            let message = message.strip_prefix(&format!("{}: ", file.display())).unwrap_or(&message).to_string();
            DataError::Invalid { path: file, message }
        }
        _ => DataError::Usage(message),
    }
}

fn check_tensor(
    info: Option<&TensorInfo>,
    name: &str,
    dtype: safetensors::Dtype,
    shape: &[usize],
) -> Result<(), String> {
    let info = info.ok_or_else(|| format!("no `{name}` tensor"))?;
    if info.dtype != dtype || info.shape != shape {
        let (got_t, got_s) = (info.dtype, &info.shape);
        return Err(format!("`{name}` is {got_t:?} {got_s:?}, the manifest says {dtype:?} {shape:?}"));
    }
    Ok(())
}

fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes(b.try_into().expect("chunks_exact(8) yields 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::writer::DatasetWriter;

    fn write(dir: &Path, n: u8, shard_items: usize) -> Manifest {
        let classes = vec!["a".into(), "b".into()];
        let mut w = DatasetWriter::create(dir, [1, 2, 3], DType::U8, classes).unwrap().with_shard_items(shard_items);
        for i in 0..n {
            w.push(&[i; 6], i64::from(i % 2)).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn writes_and_reads_back_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let m = write(dir.path(), 5, 2);
        assert_eq!((m.count, m.shards.len()), (5, 3));
        let ds = Dataset::open(dir.path()).unwrap();
        let (images, labels) = ds.read_all().unwrap();
        let expected: Vec<u8> = (0..5).flat_map(|i| [i; 6]).collect();
        assert_eq!(images, Images::U8(expected));
        assert_eq!(labels, vec![0, 1, 0, 1, 0]);
    }

    #[test]
    fn mapped_shards_give_the_items_and_labels_that_read_shard_gives() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 5, 2);
        let ds = Dataset::open(dir.path()).unwrap();
        for i in 0..3 {
            let (mapped, labels) = ds.map_shard_items(i).unwrap();
            let shard = ds.read_shard(i).unwrap();
            assert_eq!(labels, shard.labels);
            let items: Vec<u8> = (0..mapped.len()).flat_map(|j| mapped.item(j).to_vec()).collect();
            assert_eq!(Images::U8(items), shard.images);
            assert!(mapped.path().ends_with(format!("shard-0000{i}.safetensors")));
        }
    }

    #[test]
    fn f32_items_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DatasetWriter::create(dir.path(), [4, 1, 1], DType::F32, vec!["x".into()]).unwrap();
        w.push_f32(&[0.5, -1.0, 3.25, 1e-3], 0).unwrap();
        w.finish().unwrap();
        let (images, _) = Dataset::open(dir.path()).unwrap().read_all().unwrap();
        assert_eq!(images.as_f32().unwrap(), &[0.5, -1.0, 3.25, 1e-3]);
    }

    #[test]
    fn writer_refuses_wrong_length_and_label() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DatasetWriter::create(dir.path(), [1, 2, 3], DType::U8, vec!["a".into()]).unwrap();
        assert!(w.push(&[0; 5], 0).unwrap_err().to_string().contains("item of 5 bytes, expected 6"));
        assert!(w.push(&[0; 6], 1).unwrap_err().to_string().contains("label 1 outside 0..1"));
        assert!(w.push(&[0; 6], -1).is_err());
    }

    #[test]
    fn shard_shape_mismatch_names_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 4, 2);
        let text = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
        std::fs::write(dir.path().join("manifest.json"), text.replace("\"width\": 3", "\"width\": 2")).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("shard-00000.safetensors") && err.contains("[2, 1, 2, 2]"), "{err}");
    }

    /// Issue 10, item 6: pixels changed in a stored shard were read silently.
    #[test]
    fn a_stored_dataset_with_changed_pixels_or_a_missing_shard_fails_naming_entry_and_file() {
        use crate::cache::{CacheKey, Store};
        let project = tempfile::tempdir().unwrap();
        let store = Store::open(project.path()).unwrap();
        let key = CacheKey {
            kind: "images".into(),
            version: 1,
            params: std::collections::BTreeMap::new(),
            inputs: std::collections::BTreeMap::new(),
            seed: None,
            torch: None,
        };
        let staging = store.begin(&key).unwrap();
        write(staging.out_dir(), 4, 2);
        let entry = staging.commit(std::collections::BTreeMap::new(), std::collections::BTreeMap::new()).unwrap();
        assert_eq!(Dataset::open(&entry.out_dir).unwrap().read_all().unwrap().1.len(), 4);
        let shard = entry.out_dir.join("shard-00001.safetensors");
        let mut bytes = std::fs::read(&shard).unwrap();
        let last = bytes.len() - 20; // inside the images tensor, before the labels
        bytes[last] ^= 0x55;
        std::fs::write(&shard, &bytes).unwrap();
        let ds = Dataset::open(&entry.out_dir).unwrap();
        ds.read_shard(0).unwrap();
        let err = ds.read_shard(1).unwrap_err().to_string();
        assert!(err.contains("shard-00001.safetensors: hash mismatch"), "{err}");
        assert_eq!(ds.map_shard_items(1).unwrap_err().to_string(), err, "streaming checks the same");
        ds.map_shard_items(0).unwrap();
        assert!(err.contains(&entry.key[..12]), "{err}");
        assert!(err.contains("the store entry is corrupted; `msnr run` rebuilds it"), "{err}");
        std::fs::remove_file(&shard).unwrap();
        let err = Dataset::open(&entry.out_dir).unwrap_err().to_string();
        assert!(err.contains("shard-00001.safetensors: missing") && err.contains("is corrupted"), "{err}");
    }

    #[test]
    fn missing_or_truncated_shard_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 4, 2);
        std::fs::write(dir.path().join("shard-00001.safetensors"), b"junk").unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("shard-00001.safetensors"), "{err}");
        std::fs::remove_file(dir.path().join("shard-00001.safetensors")).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("shard-00001.safetensors"), "{err}");
    }
}
