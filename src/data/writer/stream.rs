//! A shard file written as its items arrive, when their number is known up front: the header
//! first (safetensors' own, computed from the tensors' dtypes and shapes alone), then each
//! image straight to the file, then the labels into the place left for them. The bytes are
//! those `safetensors::serialize_to_file` writes for the whole shard at once, without holding
//! the shard in memory or writing it all at the end, after the last image, where nothing else
//! runs beside it.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::View;
use safetensors::Dtype;

use super::super::error::DataError;
use super::super::manifest::Manifest;

/// Bytes gathered before a write to the file.
const BUFFER: usize = 1 << 20;

/// One shard of `n` items being written.
pub(super) struct ShardStream {
    file: BufWriter<File>,
    path: PathBuf,
    n: usize,
    labels: Vec<i64>,
    /// Where the labels go in the file, when they come before the images (safetensors orders
    /// tensors by dtype, largest first, then by name).
    labels_at: Option<u64>,
}

impl ShardStream {
    /// Creates `path` for `n` items shaped as `m` says and writes its header.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub(super) fn create(path: &Path, m: &Manifest, n: usize) -> Result<Self, DataError> {
        let io = |e| DataError::io(path, e);
        let header = header(m, n).map_err(|e| DataError::invalid(path, e.to_string()))?;
        let mut file = BufWriter::with_capacity(BUFFER, File::create(path).map_err(io)?);
        file.write_all(&header).map_err(io)?;
        let labels_first = Dtype::I64 > m.dtype.safetensors();
        let labels_at = labels_first.then_some(header.len() as u64);
        if labels_first {
            file.write_all(&vec![0; 8 * n]).map_err(io)?; // filled in by `finish`
        }
        Ok(Self { file, path: path.to_owned(), n, labels: Vec::with_capacity(n), labels_at })
    }

    /// Appends an item (of the manifest's item size; the writer checks); `true` once all `n`
    /// have come.
    ///
    /// # Errors
    /// When the write fails.
    pub(super) fn push(&mut self, image: &[u8], label: i64) -> Result<bool, DataError> {
        self.file.write_all(image).map_err(|e| DataError::io(&self.path, e))?;
        self.labels.push(label);
        Ok(self.labels.len() == self.n)
    }

    /// The items pushed so far.
    pub(super) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Writes the labels and closes the file.
    ///
    /// # Errors
    /// When not all `n` items came, or a write fails.
    pub(super) fn finish(mut self) -> Result<usize, DataError> {
        if self.labels.len() != self.n {
            let (got, n) = (self.labels.len(), self.n);
            return Err(DataError::Usage(format!("a shard announced {n} items but got {got}")));
        }
        let io = |e| DataError::io(&self.path, e);
        let labels: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        if let Some(at) = self.labels_at {
            self.file.seek(SeekFrom::Start(at)).map_err(io)?;
        }
        self.file.write_all(&labels).map_err(io)?;
        self.file.flush().map_err(io)?;
        Ok(self.n)
    }
}

/// A tensor known by its dtype, shape and byte length only.
struct Described {
    dtype: Dtype,
    shape: Vec<usize>,
    len: usize,
}

impl View for &Described {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&[]) // never written: `header` keeps only the header
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

/// The first bytes safetensors' serializer writes for a shard of `n` items: the header's length
/// (8 bytes) and the header (JSON, padded to 8 bytes). It reads only the views' dtypes, shapes
/// and lengths, so views without data give exactly the header.
fn header(m: &Manifest, n: usize) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let images = Described {
        dtype: m.dtype.safetensors(),
        shape: vec![n, m.channels, m.height, m.width],
        len: n * m.item_bytes(),
    };
    let labels = Described { dtype: Dtype::I64, shape: vec![n], len: 8 * n };
    safetensors::serialize([("images", &images), ("labels", &labels)], None)
}
