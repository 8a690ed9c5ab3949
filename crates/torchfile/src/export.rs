//! Writing tensors as a safetensors file, which `tch::nn::VarStore::load` reads directly.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, View};

use crate::{Checkpoint, DType, Error, ErrorKind, Tensor};

impl DType {
    /// The safetensors element type of the same layout.
    #[must_use]
    pub fn safetensors(self) -> Dtype {
        match self {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            DType::F64 => Dtype::F64,
            DType::I64 => Dtype::I64,
            DType::I32 => Dtype::I32,
            DType::I16 => Dtype::I16,
            DType::I8 => Dtype::I8,
            DType::U8 => Dtype::U8,
            DType::Bool => Dtype::BOOL,
        }
    }
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype.safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Write `tensors` to `path` as safetensors, dtypes and shapes as they are, with the
/// `{"format": "pt"}` metadata that `safetensors.torch.save_file` writes.
///
/// # Errors
/// [`ErrorKind::Write`] naming `path` when the file cannot be written.
pub fn write_safetensors(tensors: &BTreeMap<String, Tensor>, path: impl AsRef<Path>) -> Result<(), Error> {
    let path = path.as_ref();
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(tensors.iter(), Some(metadata), path)
        .map_err(|e| Error { file: path.display().to_string(), kind: ErrorKind::Write(e.to_string()) })
}

impl Checkpoint {
    /// Write the tensors under `prefix` (named relative to it, see [`Checkpoint::tensors`])
    /// to `path` as safetensors; returns how many were written.
    ///
    /// # Errors
    /// [`ErrorKind::NoTensors`] when none sits under the prefix, [`ErrorKind::Write`] when
    /// the file cannot be written.
    pub fn write_safetensors(&self, prefix: Option<&str>, path: impl AsRef<Path>) -> Result<usize, Error> {
        let tensors = self.require_tensors(prefix)?;
        write_safetensors(&tensors, path)?;
        Ok(tensors.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    fn read_back(path: &Path) -> BTreeMap<String, Tensor> {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let dtype = |d: Dtype| DType::ALL.into_iter().find(|t| t.safetensors() == d).unwrap();
        st.tensors()
            .into_iter()
            .map(|(name, v)| {
                (name, Tensor { dtype: dtype(v.dtype()), shape: v.shape().to_vec(), data: v.data().to_vec() })
            })
            .collect()
    }

    #[test]
    fn every_dtype_and_view_round_trips_through_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["zip_dtypes.pt", "legacy_views.pt"] {
            let ckpt = crate::load(fixture(name)).unwrap();
            let out = dir.path().join("out.safetensors");
            assert_eq!(ckpt.write_safetensors(None, &out).unwrap(), ckpt.tensors(None).len());
            assert_eq!(read_back(&out), ckpt.tensors(None), "{name}");
        }
    }

    #[test]
    fn a_prefix_writes_one_state_dict_under_its_own_names() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = crate::load(fixture("zip_nested.pt")).unwrap();
        let out = dir.path().join("ema.safetensors");
        assert_eq!(ckpt.write_safetensors(Some("ema"), &out).unwrap(), 9);
        let written = read_back(&out);
        assert_eq!(written, ckpt.tensors(Some("ema")));
        assert!(written.contains_key("3.running_var"));
        // What PyTorch's own state_dict holds under those names.
        let torch = crate::load(fixture("zip_state_dict.pt")).unwrap().tensors(None);
        assert_eq!(written.keys().collect::<Vec<_>>(), torch.keys().collect::<Vec<_>>());
        let err = ckpt.write_safetensors(Some("nope"), dir.path().join("x.safetensors")).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::NoTensors { .. }));
        let err = ckpt.write_safetensors(None, dir.path().join("missing/dir/x.safetensors")).unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Write(_)) && err.file.ends_with("x.safetensors"), "{err}");
    }
}
