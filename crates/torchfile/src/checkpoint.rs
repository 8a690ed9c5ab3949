//! The loaded checkpoint: the saved object as plain [`Value`]s with tensors materialised,
//! and the flattening of nested dicts and lists into dotted tensor names.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::ErrorKind;
use crate::pickle::{kind, Id, Node, TensorView};
use crate::tensor::{extent, gather, numel, Tensor};

/// Deepest nesting accepted (a state dict is 2 or 3 deep; this also stops memo cycles).
const MAX_DEPTH: usize = 100;

/// Which container the file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The zip archive `torch.save` writes since torch 1.6.
    Zip,
    /// The legacy stream of pickles and raw storages (torch < 1.6, or
    /// `_use_new_zipfile_serialization=False`).
    Legacy,
}

/// A value of the saved object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int that fits 64 bits.
    Int(i64),
    /// A wider int, as little-endian two's complement bytes.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A bytes object.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict or `OrderedDict` in insertion order (for a repeated key the last one counts).
    Dict(Vec<(Value, Value)>),
    /// A tensor (a `Parameter` is read as its tensor).
    Tensor(Tensor),
}

impl Value {
    /// The name a dict key contributes to a dotted path: strs as they are, ints in decimal.
    #[must_use]
    pub fn key_name(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A `torch.save` file, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The file's name, for messages.
    pub(crate) file: String,
    /// Its container format.
    pub(crate) format: Format,
    /// The saved object.
    pub(crate) root: Value,
}

impl Checkpoint {
    /// The container format the file had.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// The saved object.
    #[must_use]
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The value at a dotted path (`"ema"`, `"config.depth"`, `"model.0.weight"`, `"history.1"`);
    /// keys that contain dots themselves are matched whole. `""` is the root.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&Value> {
        lookup(&self.root, path, 0)
    }

    /// Every tensor under dotted names (nested dict keys and list indices joined by `.`).
    /// With a prefix, only the tensors under it, named relative to it: `Some("ema")` turns
    /// `ema.net.weight` into `net.weight` (`"ema."` means the same). Where two paths spell
    /// the same name, the later one in the file wins; a file holding one bare tensor names
    /// it `""`.
    #[must_use]
    pub fn tensors(&self, prefix: Option<&str>) -> BTreeMap<String, Tensor> {
        let mut all = BTreeMap::new();
        flatten(&self.root, String::new(), &mut all);
        select(all, prefix)
    }

    /// [`Checkpoint::tensors`] without copying: the checkpoint is consumed.
    #[must_use]
    pub fn into_tensors(self, prefix: Option<&str>) -> BTreeMap<String, Tensor> {
        let mut all = BTreeMap::new();
        flatten_owned(self.root, String::new(), &mut all);
        select(all, prefix)
    }

    /// [`Checkpoint::tensors`], but an error naming the top-level entries when there is none.
    ///
    /// # Errors
    /// [`ErrorKind::NoTensors`] when no tensor sits under the prefix.
    pub fn require_tensors(&self, prefix: Option<&str>) -> Result<BTreeMap<String, Tensor>, crate::Error> {
        let found = self.tensors(prefix);
        if !found.is_empty() {
            return Ok(found);
        }
        let mut available: Vec<String> =
            self.tensors(None).keys().map(|k| k.split('.').next().unwrap_or(k).to_owned()).collect();
        available.dedup();
        let available =
            if available.is_empty() { "none (the file holds no tensors)".to_owned() } else { available.join(", ") };
        let kind = ErrorKind::NoTensors { prefix: prefix.unwrap_or("").to_owned(), available };
        Err(crate::Error { file: self.file.clone(), kind })
    }
}

fn lookup<'v>(value: &'v Value, path: &str, depth: usize) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::Dict(entries) => entries.iter().rev().find_map(|(key, child)| {
            let key = key.key_name()?;
            let rest = path.strip_prefix(key.as_str())?;
            if rest.is_empty() {
                return Some(child);
            }
            lookup(child, rest.strip_prefix('.')?, depth + 1)
        }),
        Value::List(items) | Value::Tuple(items) => {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            lookup(items.get(head.parse::<usize>().ok()?)?, rest, depth + 1)
        }
        _ => None,
    }
}

/// The tensors under `prefix.`, renamed relative to it; all of them without a prefix.
fn select(all: BTreeMap<String, Tensor>, prefix: Option<&str>) -> BTreeMap<String, Tensor> {
    match prefix.map(|p| p.trim_end_matches('.')).filter(|p| !p.is_empty()) {
        None => all,
        Some(prefix) => {
            let head = format!("{prefix}.");
            all.into_iter().filter_map(|(name, t)| Some((name.strip_prefix(&head)?.to_owned(), t))).collect()
        }
    }
}

fn flatten_owned(value: Value, name: String, out: &mut BTreeMap<String, Tensor>) {
    match value {
        Value::Tensor(t) => {
            out.insert(name, t);
        }
        Value::Dict(entries) => {
            for (key, child) in entries {
                if let Some(key) = key.key_name() {
                    flatten_owned(child, join(&name, &key), out);
                }
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, child) in items.into_iter().enumerate() {
                flatten_owned(child, join(&name, &i.to_string()), out);
            }
        }
        _ => {}
    }
}

fn flatten(value: &Value, name: String, out: &mut BTreeMap<String, Tensor>) {
    match value {
        Value::Tensor(t) => {
            out.insert(name, t.clone());
        }
        Value::Dict(entries) => {
            for (key, child) in entries {
                if let Some(key) = key.key_name() {
                    flatten(child, join(&name, &key), out);
                }
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, child) in items.iter().enumerate() {
                flatten(child, join(&name, &i.to_string()), out);
            }
        }
        _ => {}
    }
}

/// Turns the arena of one unpickled object into [`Value`]s, reading each tensor out of its
/// storage, within budgets that the file's length sets.
pub(crate) struct Builder<'a> {
    /// The unpickled nodes.
    pub arena: &'a [Node],
    /// Storage bytes by key.
    pub storages: HashMap<String, Vec<u8>>,
    /// Storages that exactly one tensor of the tree reads: a tensor covering one of them
    /// whole and contiguous takes its bytes instead of copying them.
    pub sole_use: HashSet<String>,
    /// Nodes plus string bytes still allowed (memo sharing could otherwise blow up).
    pub units_left: u64,
    /// Tensor bytes still allowed.
    pub tensor_bytes_left: u64,
}

impl Builder<'_> {
    /// The value of node `id`, named `name` (a dotted path) in errors.
    pub(crate) fn value(&mut self, id: Id, name: &str, depth: usize) -> Result<Value, ErrorKind> {
        if depth > MAX_DEPTH {
            return Err(value_error(name, format!("nested deeper than {MAX_DEPTH} levels (or a cycle)")));
        }
        let node = &self.arena[id];
        self.spend(name, node)?;
        Ok(match node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(n) => Value::Int(*n),
            Node::BigInt(b) => Value::BigInt(b.clone()),
            Node::Float(x) => Value::Float(*x),
            Node::Str(s) => Value::Str(s.clone()),
            Node::Bytes(b) => Value::Bytes(b.clone()),
            Node::List(items) => Value::List(self.items(items, name, depth)?),
            Node::Tuple(items) => Value::Tuple(self.items(items, name, depth)?),
            Node::Dict(entries) => Value::Dict(self.entries(entries, name, depth)?),
            Node::Tensor(view) => Value::Tensor(self.tensor(view, name)?),
            Node::Global(_) | Node::Storage(_) => {
                return Err(value_error(
                    name,
                    format!("a bare {} is not data (only tensors hold storages)", kind(node)),
                ));
            }
        })
    }

    fn spend(&mut self, name: &str, node: &Node) -> Result<(), ErrorKind> {
        let payload = match node {
            Node::Str(s) => s.len(),
            Node::Bytes(b) | Node::BigInt(b) => b.len(),
            _ => 0,
        };
        let cost = 1 + payload as u64;
        self.units_left = self.units_left.checked_sub(cost).ok_or_else(|| {
            value_error(
                name,
                "the pickle shares its objects so often that reading it out would not fit in memory".into(),
            )
        })?;
        Ok(())
    }

    fn items(&mut self, items: &[Id], name: &str, depth: usize) -> Result<Vec<Value>, ErrorKind> {
        let mut out = Vec::with_capacity(items.len());
        for (i, &item) in items.iter().enumerate() {
            out.push(self.value(item, &join(name, &i.to_string()), depth + 1)?);
        }
        Ok(out)
    }

    fn entries(&mut self, entries: &[(Id, Id)], name: &str, depth: usize) -> Result<Vec<(Value, Value)>, ErrorKind> {
        let mut out = Vec::with_capacity(entries.len());
        for &(key, value) in entries {
            let key = self.value(key, &join(name, "<key>"), depth + 1)?;
            let child = join(name, &key.key_name().unwrap_or_else(|| "<key>".to_owned()));
            out.push((key, self.value(value, &child, depth + 1)?));
        }
        Ok(out)
    }

    /// Check a view against its storage and copy it out contiguous (or take the storage's
    /// bytes when this view is its only use and covers it whole, in order).
    fn tensor(&mut self, view: &TensorView, name: &str) -> Result<Tensor, ErrorKind> {
        let dtype = view.storage.dtype;
        let storage = storage_bytes(&self.storages, view, name)?;
        let err = |problem: String| value_error(name, problem);
        let need = extent(view.offset, &view.shape, &view.stride).map_err(err)?;
        let have = (storage.len() / dtype.size()) as u64;
        if need > have {
            return Err(err(format!(
                "size {:?} with stride {:?} at offset {} needs {need} elements of storage `{}`, which holds {have} {dtype}",
                view.shape, view.stride, view.offset, view.storage.key
            )));
        }
        let count = numel(&view.shape).ok_or_else(|| err(format!("size {:?} overflows", view.shape)))?;
        let bytes = count.saturating_mul(dtype.size() as u64);
        self.tensor_bytes_left = self
            .tensor_bytes_left
            .checked_sub(bytes)
            .ok_or_else(|| ErrorKind::TooLarge { what: format!("tensor `{name}` of size {:?}", view.shape), bytes })?;
        // Every number below is at most the storage's length or the budget, so fits usize.
        let to_usize = |v: &[u64]| v.iter().map(|&x| usize::try_from(x).unwrap_or(usize::MAX)).collect::<Vec<_>>();
        let shape = to_usize(&view.shape);
        let offset = usize::try_from(view.offset).unwrap_or(usize::MAX);
        let stride = to_usize(&view.stride);
        let whole = view.storage.view.is_none()
            && offset == 0
            && is_contiguous(&shape, &stride)
            && bytes == storage.len() as u64
            && self.sole_use.contains(&view.storage.key);
        let data = if whole {
            self.storages.remove(&view.storage.key).unwrap_or_default()
        } else {
            gather(storage, dtype.size(), offset, &shape, &stride)
        };
        Ok(Tensor { dtype, shape, data })
    }
}

/// The bytes a view reads: its storage, or for a legacy storage view the part it covers.
fn storage_bytes<'s>(
    storages: &'s HashMap<String, Vec<u8>>,
    view: &TensorView,
    name: &str,
) -> Result<&'s [u8], ErrorKind> {
    let key = &view.storage.key;
    let bytes = storages.get(key).ok_or_else(|| value_error(name, format!("storage `{key}` is missing")))?;
    let Some((_, start, len)) = &view.storage.view else { return Ok(bytes) };
    let size = view.storage.dtype.size() as u64;
    let byte = |elements: Option<u64>| elements?.checked_mul(size).and_then(|b| usize::try_from(b).ok());
    match (byte(Some(*start)), byte(start.checked_add(*len))) {
        (Some(from), Some(to)) if to <= bytes.len() => Ok(&bytes[from..to]),
        _ => Err(value_error(name, format!("storage view [{start}, +{len}) lies outside storage `{key}`"))),
    }
}

/// How often the walk from `root` meets a tensor of each storage key, or `None` when the
/// walk passes the depth or node budget (the builder then reports that).
pub(crate) fn storage_visits(arena: &[Node], root: Id, mut units: u64) -> Option<HashMap<&str, usize>> {
    let mut visits = HashMap::new();
    let mut todo = vec![(root, 0usize)];
    while let Some((id, depth)) = todo.pop() {
        units = units.checked_sub(1).filter(|_| depth <= MAX_DEPTH)?;
        match &arena[id] {
            Node::List(items) | Node::Tuple(items) => todo.extend(items.iter().map(|&i| (i, depth + 1))),
            Node::Dict(entries) => todo.extend(entries.iter().flat_map(|&(k, v)| [(k, depth + 1), (v, depth + 1)])),
            Node::Tensor(view) => *visits.entry(view.storage.key.as_str()).or_insert(0) += 1,
            _ => {}
        }
    }
    Some(visits)
}

/// Whether strides are row-major contiguous for the shape (size-1 dimensions are free).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&size, &step) in shape.iter().zip(stride).rev() {
        if size != 1 && step != expected {
            return false;
        }
        expected = expected.saturating_mul(size);
    }
    true
}

fn join(name: &str, key: &str) -> String {
    if name.is_empty() {
        key.to_owned()
    } else {
        format!("{name}.{key}")
    }
}

fn value_error(name: &str, problem: String) -> ErrorKind {
    ErrorKind::Value { name: name.to_owned(), problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_size_one_dimensions() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
        assert!(!is_contiguous(&[3, 2], &[0, 1]));
    }

    #[test]
    fn storage_visits_count_shared_storages_and_stop_at_the_budget() {
        let view = |key: &str| {
            let storage = crate::pickle::StorageRef { key: key.into(), dtype: crate::DType::F32, numel: 1, view: None };
            Node::Tensor(TensorView { storage, offset: 0, shape: vec![], stride: vec![] })
        };
        // [a, b, a2, b] where a and a2 share storage "0" and b (node 1) appears twice.
        let arena = vec![view("0"), view("1"), view("0"), Node::List(vec![0, 1, 2, 1])];
        let visits = storage_visits(&arena, 3, 100).unwrap();
        assert_eq!((visits["0"], visits["1"]), (2, 2));
        assert_eq!(storage_visits(&arena, 3, 3), None);
    }
}
