//! Reads `torch.save` checkpoints without Python or libtorch.
//!
//! ```no_run
//! let ckpt = torchfile::load("ema_0.9999_xl.pt")?;
//! for (name, tensor) in ckpt.tensors(None) {
//!     println!("{name}: {} {:?}", tensor.dtype, tensor.shape);
//! }
//! let ema = ckpt.require_tensors(Some("ema"))?; // `{"model": ..., "ema": ...}` checkpoints
//! # Ok::<(), torchfile::Error>(())
//! ```
//!
//! Both containers are read: the zip archive of torch >= 1.6 and the legacy stream of
//! torch < 1.6 (`_use_new_zipfile_serialization=False`); see the `container` module. The
//! saved object may be a dict, an `OrderedDict` state dict, nested dicts, lists and
//! tuples of tensors, with ints, floats, strs, bools and `None` beside them. Tensors may be
//! views of a storage at any offset and stride (they are copied out contiguous), share
//! storages, be 0-d or empty, in any of the dtypes of [`DType`]; parameters
//! (`torch._utils._rebuild_parameter`) are read as their tensors.
//!
//! # Safety: it only builds data
//!
//! A pickle is a program for Python's pickle machine: `GLOBAL os system` + `REDUCE`
//! runs a shell command in `torch.load(weights_only=False)`. This reader never runs
//! anything; its unpickler (`pickle` module) resolves globals against a fixed allow-list
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor[_v2]`,
//! `torch._utils._rebuild_parameter`, `torch.<Type>Storage`) and refuses any other global,
//! and the opcodes that build arbitrary objects, with an error naming it. Every read is
//! bounds-checked, sizes are overflow-checked, a view that reaches past its storage is an
//! error, stack/memo/mark misuse is an error, and allocations are bounded by the file's
//! own length (zip entries by their compressed size, tensors by 16 times the file's
//! length), so a hostile file fails cleanly: no panic, no hang, no huge allocation.
//!
//! # Why not an existing crate
//!
//! Checked 2026-12-06: candle-core 0.9's `pickle` reads zip-format state dicts but fails on
//! strided views ("cannot retrieve non-contiguous tensors") and on the legacy format, and
//! brings in all of candle. serde-pickle cannot resolve torch's persistent ids. burn's
//! `pytorch-reader` 0.22.1 reads both formats and views, but it keeps an unknown global
//! called by `REDUCE` (`os.system`, a numpy scalar) as an opaque value instead of refusing
//! it, reads whole pickled `nn.Module`s, and needs zip 9, tar and serde beside the zip 2
//! msnr already uses. The issue asks for a strict allow-list with errors naming what is
//! refused, so this crate carries its own small unpickler (protocols 2 to 5 as torch
//! writes them, and the protocol 0/1 opcodes they share) on top of `zip`.

mod checkpoint;
mod container;
mod dtype;
mod error;
mod pickle;
mod tensor;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

pub use checkpoint::{Checkpoint, Format, Value};
pub use dtype::DType;
pub use error::{Error, ErrorKind, PickleProblem};
pub use tensor::Tensor;

use checkpoint::Builder;
use container::Loaded;

/// Read the `torch.save` file at `path`.
///
/// # Errors
/// An [`Error`] naming the file when it cannot be read, is no `torch.save` checkpoint, names
/// a global outside the allow-list, or is damaged anywhere (see [`ErrorKind`]).
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, Error> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let wrap = |kind: ErrorKind| Error { file: name.clone(), kind };
    let file = File::open(path).map_err(|e| wrap(e.into()))?;
    let len = file.metadata().map_err(|e| wrap(e.into()))?.len();
    read(&name, BufReader::new(file), len)
}

/// Read a `torch.save` checkpoint held in memory; `name` names it in errors.
///
/// # Errors
/// As [`load`].
pub fn load_bytes(name: &str, bytes: &[u8]) -> Result<Checkpoint, Error> {
    read(name, Cursor::new(bytes), bytes.len() as u64)
}

fn read<R: Read + Seek>(name: &str, mut reader: R, len: u64) -> Result<Checkpoint, Error> {
    let wrap = |kind: ErrorKind| Error { file: name.to_owned(), kind };
    let mut head = [0u8; 4];
    let got = reader.read(&mut head).map_err(|e| wrap(e.into()))?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| wrap(e.into()))?;
    let (format, loaded) = if got >= 2 && head.starts_with(b"PK") {
        (Format::Zip, container::read_zip(reader).map_err(wrap)?)
    } else {
        let capacity =
            usize::try_from(len).map_err(|_| wrap(ErrorKind::TooLarge { what: "the file".into(), bytes: len }))?;
        let mut bytes = Vec::with_capacity(capacity);
        reader.read_to_end(&mut bytes).map_err(|e| wrap(e.into()))?;
        (Format::Legacy, container::read_legacy(&bytes).map_err(wrap)?)
    };
    let root = build(&loaded, len).map_err(wrap)?;
    Ok(Checkpoint { file: name.to_owned(), format, root })
}

/// Materialise the unpickled object within budgets set by the file's length.
fn build(loaded: &Loaded, file_len: u64) -> Result<Value, ErrorKind> {
    let storages: &HashMap<String, Vec<u8>> = &loaded.storages;
    let mut builder = Builder {
        arena: &loaded.pickle.arena,
        storages,
        units_left: (loaded.pickle_len as u64).saturating_mul(8).saturating_add(1 << 20),
        tensor_bytes_left: file_len.saturating_mul(16).saturating_add(1 << 20),
    };
    builder.value(loaded.pickle.root, "", 0)
}
