//! The two containers `torch.save` writes, each read into one unpickled object plus the
//! bytes of the storages it references.
//!
//! Zip (torch >= 1.6, `torch/serialization.py::_save`): `<folder>/data.pkl` holds the object,
//! `<folder>/data/<key>` each storage's raw little-endian bytes, `<folder>/byteorder` the
//! byte order; the folder is the file's stem (`archive` for a file object).
//!
//! Legacy (`_legacy_save`): five pickles back to back (magic number, protocol version 1001,
//! system info, the object, the sorted list of storage keys), then for each key in that
//! order an 8-byte little-endian element count and the storage's bytes.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};

use crate::error::{ErrorKind, PickleProblem};
use crate::pickle::{unpickle, Id, Node, StorageRef, Unpickled};

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c), as LONG1 little-endian bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// `torch.serialization.PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i64 = 1001;
/// Deflate expands at most about 1032:1; a declared size beyond that is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// One object unpickled from a container, with the storages it names.
pub(crate) struct Loaded {
    /// The unpickled nodes and the root.
    pub pickle: Unpickled,
    /// Storage bytes by key.
    pub storages: HashMap<String, Vec<u8>>,
    /// Length of the main pickle (for the builder's budget).
    pub pickle_len: usize,
}

/// Storages referenced anywhere in the arena, in pickle order, with their first reference.
fn storage_refs(arena: &[Node]) -> Vec<&StorageRef> {
    let mut seen = HashSet::new();
    let mut refs = Vec::new();
    for node in arena {
        let storage = match node {
            Node::Storage(s) => s,
            Node::Tensor(t) => &t.storage,
            _ => continue,
        };
        if seen.insert(storage.key.as_str()) {
            refs.push(storage);
        }
    }
    refs
}

/// Read a zip-format checkpoint.
pub(crate) fn read_zip<R: Read + Seek>(reader: R) -> Result<Loaded, ErrorKind> {
    let zip_err = |e: zip::result::ZipError| ErrorKind::Zip(e.to_string());
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    let names: HashSet<String> = archive.file_names().map(str::to_owned).collect();
    let mut pickles = names.iter().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1);
    let Some(pkl) = pickles.next().cloned() else {
        return Err(ErrorKind::Zip("no `<folder>/data.pkl` entry: not written by torch.save".into()));
    };
    if let Some(other) = pickles.next() {
        return Err(ErrorKind::Zip(format!("two checkpoints in one archive: `{pkl}` and `{other}`")));
    }
    let folder = pkl.trim_end_matches("data.pkl");
    if names.contains(&format!("{folder}constants.pkl"))
        || names.iter().any(|n| n.starts_with(&format!("{folder}code/")))
    {
        return Err(ErrorKind::NotTorch("a TorchScript archive (torch.jit.save), not a torch.save checkpoint".into()));
    }
    let order_entry = format!("{folder}byteorder");
    if names.contains(&order_entry) {
        let order = read_entry(&mut archive, &order_entry)?;
        if order.trim_ascii() != b"little" {
            return Err(ErrorKind::Zip(format!(
                "byte order {:?}: only little-endian files are read",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let bytes = read_entry(&mut archive, &pkl)?;
    let pickle =
        unpickle(&bytes).map_err(|(offset, problem)| ErrorKind::Pickle { part: pkl.clone(), offset, problem })?;
    let mut storages = HashMap::new();
    for storage in storage_refs(&pickle.arena) {
        let name = format!("{folder}data/{}", storage.key);
        if !names.contains(&name) {
            let problem = format!("no `{name}` entry in the archive");
            return Err(ErrorKind::Storage { key: storage.key.clone(), problem });
        }
        storages.insert(storage.key.clone(), read_entry(&mut archive, &name)?);
    }
    Ok(Loaded { pickle, storages, pickle_len: bytes.len() })
}

/// One zip entry's bytes, refusing sizes its compressed length cannot justify.
fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str) -> Result<Vec<u8>, ErrorKind> {
    let zip_err = |e: zip::result::ZipError| ErrorKind::Zip(format!("entry `{name}`: {e}"));
    let entry = archive.by_name(name).map_err(zip_err)?;
    let size = entry.size();
    let limit = entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024);
    if size > limit {
        return Err(ErrorKind::TooLarge { what: format!("zip entry `{name}`"), bytes: size });
    }
    let capacity =
        usize::try_from(size).map_err(|_| ErrorKind::TooLarge { what: format!("zip entry `{name}`"), bytes: size })?;
    let mut out = Vec::with_capacity(capacity);
    entry.take(size).read_to_end(&mut out).map_err(|e| ErrorKind::Zip(format!("entry `{name}`: {e}")))?;
    if out.len() as u64 != size {
        return Err(ErrorKind::Zip(format!("entry `{name}` holds {} bytes, not the {size} it declares", out.len())));
    }
    Ok(out)
}

/// Read a legacy-format checkpoint held in memory.
pub(crate) fn read_legacy(bytes: &[u8]) -> Result<Loaded, ErrorKind> {
    let not_torch = || {
        ErrorKind::NotTorch(
            "neither a zip archive nor a legacy torch.save stream (no magic number; the tar format of torch < 0.1.10 is not read)"
                .into(),
        )
    };
    let magic = unpickle(bytes).map_err(|_| not_torch())?;
    if magic.arena.get(magic.root) != Some(&Node::BigInt(LEGACY_MAGIC.to_vec())) {
        return Err(not_torch());
    }
    let mut pos = magic.end;
    let protocol = part(bytes, &mut pos, "the legacy protocol pickle")?;
    if protocol.arena[protocol.root] != Node::Int(LEGACY_PROTOCOL) {
        return Err(ErrorKind::NotTorch(format!("legacy protocol is not {LEGACY_PROTOCOL}")));
    }
    let sys_info = part(bytes, &mut pos, "the legacy system-info pickle")?;
    if lookup_str_key(&sys_info.arena, sys_info.root, "little_endian") == Some(&Node::Bool(false)) {
        return Err(ErrorKind::NotTorch("a big-endian legacy file: only little-endian files are read".into()));
    }
    let main_start = pos;
    let pickle = part(bytes, &mut pos, "the legacy main pickle")?;
    let pickle_len = pos - main_start;
    let keys_start = pos;
    let keys = part(bytes, &mut pos, "the legacy storage-key pickle")?;
    let keys = key_list(&keys.arena, keys.root).map_err(|problem| ErrorKind::Pickle {
        part: "the legacy storage-key pickle".into(),
        offset: keys_start,
        problem,
    })?;
    let storages = legacy_storages(bytes, pos, &keys, &storage_refs(&pickle.arena))?;
    Ok(Loaded { pickle, storages, pickle_len })
}

/// Unpickle the next pickle of a legacy stream, with offsets in the file.
fn part(bytes: &[u8], pos: &mut usize, name: &str) -> Result<Unpickled, ErrorKind> {
    let start = *pos;
    let unpickled = unpickle(&bytes[start..]).map_err(|(offset, problem)| ErrorKind::Pickle {
        part: name.to_owned(),
        offset: start + offset,
        problem,
    })?;
    *pos = start + unpickled.end;
    Ok(unpickled)
}

/// The value under a str key of a dict node.
fn lookup_str_key<'a>(arena: &'a [Node], dict: Id, key: &str) -> Option<&'a Node> {
    let Node::Dict(entries) = &arena[dict] else { return None };
    entries.iter().rev().find(|(k, _)| matches!(&arena[*k], Node::Str(s) if s == key)).map(|&(_, v)| &arena[v])
}

/// The legacy storage-key list: a list of strs.
fn key_list(arena: &[Node], root: Id) -> Result<Vec<String>, PickleProblem> {
    let Node::List(items) = &arena[root] else {
        return Err(PickleProblem::Malformed("the storage keys are not a list".into()));
    };
    let key = |&id: &Id| match &arena[id] {
        Node::Str(s) => Ok(s.clone()),
        other => Err(PickleProblem::Malformed(format!("a storage key is a {}", crate::pickle::kind(other)))),
    };
    items.iter().map(key).collect()
}

/// The raw storages after the pickles: per key, an i64 element count and the elements, whose
/// size is that of the first reference's dtype (as `torch.serialization._legacy_load` reads).
fn legacy_storages(
    bytes: &[u8],
    mut pos: usize,
    keys: &[String],
    refs: &[&StorageRef],
) -> Result<HashMap<String, Vec<u8>>, ErrorKind> {
    let mut storages = HashMap::new();
    for key in keys {
        let storage_err = |problem: String| ErrorKind::Storage { key: key.clone(), problem };
        let Some(storage) = refs.iter().find(|s| &s.key == key) else {
            return Err(storage_err("listed after the pickle but never referenced in it".into()));
        };
        let header =
            bytes.get(pos..pos + 8).ok_or_else(|| storage_err("the file ends before its element count".into()))?;
        let count = i64::from_le_bytes(header.try_into().unwrap_or_default());
        pos += 8;
        let left = bytes.len() - pos;
        let len = u64::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(storage.dtype.size() as u64))
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= left)
            .ok_or_else(|| {
                storage_err(format!("{count} elements of {} do not fit the {left} bytes left", storage.dtype))
            })?;
        if storages.insert(key.clone(), bytes[pos..pos + len].to_vec()).is_some() {
            return Err(storage_err("listed twice".into()));
        }
        pos += len;
    }
    Ok(storages)
}
