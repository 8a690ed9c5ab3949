//! A restricted unpickler: it builds data from a pickle and never runs anything.
//!
//! Opcodes are those of Python's `pickle` module (protocols 0 to 5, `Lib/pickletools.py`
//! documents each). Values go into an arena ([`Node`], addressed by [`Id`]) so that the
//! memo shares objects as Python's does: a dict memoised while empty and filled later by
//! `SETITEMS` is the filled dict wherever `BINGET` fetches it. Globals are resolved
//! against a fixed allow-list ([`Global`]); any other global, and the opcodes that build
//! arbitrary objects (`INST`, `OBJ`, `NEWOBJ`, `EXT*`, sets, out-of-band buffers), are
//! errors naming them. `REDUCE` only applies the allowed builders: an `OrderedDict`, a
//! tensor view over a storage (`torch._utils._rebuild_tensor_v2`), a parameter
//! (`_rebuild_parameter`). Storages arrive as persistent ids (`BINPERSID`) and stay
//! references ([`StorageRef`]) that the container reader resolves afterwards.
//!
//! Every read is bounds-checked and every count is limited by the bytes left, so the
//! arena and the stack grow at most linearly with the pickle's length.

use std::collections::HashMap;

use crate::dtype::DType;
use crate::error::PickleProblem;

/// The globals a pickle may name, as listed in error messages.
pub(crate) const ALLOWED_GLOBALS: &str = "collections.OrderedDict, torch._utils._rebuild_tensor, \
    torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.<Type>Storage";

/// Longest storage key accepted (torch writes short decimal keys); keeps copies cheap.
const MAX_KEY_LEN: usize = 256;

/// Index of a node in the arena.
pub(crate) type Id = usize;

/// One unpickled value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits 64 bits.
    Int(i64),
    /// A wider int, as little-endian two's complement bytes (the legacy magic number).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// A bytes object.
    Bytes(Vec<u8>),
    /// A list (mutable: `APPEND` adds to it).
    List(Vec<Id>),
    /// A tuple.
    Tuple(Vec<Id>),
    /// A dict or `OrderedDict`, in insertion order; a repeated key is kept twice and the
    /// last one wins when read, as in Python.
    Dict(Vec<(Id, Id)>),
    /// An allowed global (a callable or a storage type).
    Global(Global),
    /// A storage, from a persistent id.
    Storage(StorageRef),
    /// A tensor: a strided view of a storage.
    Tensor(TensorView),
}

/// The globals this reader knows; every other one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)` (torch < 0.4).
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`.
    RebuildParameter,
    /// `torch.FloatStorage` and friends: the element type of a persistent storage.
    StorageType(DType),
}

impl Global {
    /// The allowed global `module.name`, or `None` when it is not on the list.
    fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", storage) => DType::from_storage_name(storage).map(Global::StorageType),
            _ => None,
        }
    }
}

/// A storage named by a persistent id `('storage', type, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// The storage's key (`data/<key>` in a zip, a key of the legacy storage list).
    pub key: String,
    /// The element type the storage type names.
    pub dtype: DType,
    /// Elements the persistent id declares.
    pub numel: u64,
    /// Legacy storage views: `(view key, element offset, element count)` into `key`.
    pub view: Option<(String, u64, u64)>,
}

/// A tensor as `_rebuild_tensor_v2` describes it, not yet checked against its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorView {
    /// The storage it views.
    pub storage: StorageRef,
    /// Offset of element 0, in elements.
    pub offset: u64,
    /// Size of each dimension.
    pub shape: Vec<u64>,
    /// Step of each dimension, in elements.
    pub stride: Vec<u64>,
}

/// The result of one pickle: its nodes, the root, and where the pickle ended.
#[derive(Debug)]
pub(crate) struct Unpickled {
    /// All nodes built.
    pub arena: Vec<Node>,
    /// The value `STOP` returned.
    pub root: Id,
    /// Offset just past `STOP`, relative to the slice given to [`unpickle`].
    pub end: usize,
}

/// A pickle error at a byte offset (relative to the slice given to [`unpickle`]).
pub(crate) type Located = (usize, PickleProblem);

/// Unpickle the pickle that starts at `data[0]`, stopping at its `STOP`.
pub(crate) fn unpickle(data: &[u8]) -> Result<Unpickled, Located> {
    let mut machine =
        Machine { data, pos: 0, arena: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    loop {
        let at = machine.pos;
        match machine.step() {
            Ok(Some(root)) => return Ok(Unpickled { arena: machine.arena, root, end: machine.pos }),
            Ok(None) => {}
            Err(problem) => return Err((at, problem)),
        }
    }
}

type Step<T> = Result<T, PickleProblem>;

fn malformed<T>(message: impl Into<String>) -> Step<T> {
    Err(PickleProblem::Malformed(message.into()))
}

/// The unpickling machine: input, arena, stack, marks and memo.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

impl Machine<'_> {
    /// Run one opcode; `Some(root)` at `STOP`.
    fn step(&mut self) -> Step<Option<Id>> {
        let op = self.take(1)?[0];
        match op {
            b'.' => return self.pop().map(Some),
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => self.dup()?,
            // PROTO, and FRAME (framing is only a read-ahead hint: the opcodes run on).
            0x80 => {
                self.take(1)?;
            }
            0x95 => {
                self.take(8)?;
            }
            b'N' => self.push(Node::None),
            0x88 => self.push(Node::Bool(true)),
            0x89 => self.push(Node::Bool(false)),
            _ => return self.step_value(op).map(|()| None),
        }
        Ok(None)
    }

    /// Opcodes that push numbers, strings and containers, or use the memo.
    fn step_value(&mut self, op: u8) -> Step<()> {
        match op {
            b'J' => {
                let v = i32::from_le_bytes(self.array()?);
                self.push_int(i64::from(v));
            }
            b'K' => {
                let v = self.take(1)?[0];
                self.push_int(i64::from(v));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.array()?);
                self.push_int(i64::from(v));
            }
            b'I' => self.text_int()?,
            b'L' => self.text_long()?,
            0x8a => self.long_bytes(1)?,
            0x8b => self.long_bytes(4)?,
            b'G' => {
                let v = f64::from_be_bytes(self.array()?);
                self.push(Node::Float(v));
            }
            b'F' => self.text_float()?,
            b'X' => self.string(4, true)?,
            0x8c => self.string(1, true)?,
            0x8d => self.string(8, true)?,
            b'T' => self.string(4, false)?,
            b'U' => self.string(1, false)?,
            b'B' => self.bytes(4)?,
            b'C' => self.bytes(1)?,
            0x8e => self.bytes(8)?,
            _ => return self.step_container(op),
        }
        Ok(())
    }

    /// Opcodes that build or fill containers.
    fn step_container(&mut self, op: u8) -> Step<()> {
        match op {
            b']' => self.push(Node::List(Vec::new())),
            b')' => self.push(Node::Tuple(Vec::new())),
            b'}' => self.push(Node::Dict(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items));
            }
            0x85..=0x87 => self.small_tuple(usize::from(op - 0x84))?,
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(&items)?;
                self.push(Node::Dict(pairs));
            }
            b'a' => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![(key, value)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(pairs(&items)?)?;
            }
            _ => return self.step_memo(op),
        }
        Ok(())
    }

    /// Memo opcodes.
    fn step_memo(&mut self, op: u8) -> Step<()> {
        match op {
            b'h' => {
                let index = self.take(1)?[0];
                self.get(u64::from(index))
            }
            b'j' => {
                let index = u32::from_le_bytes(self.array()?);
                self.get(u64::from(index))
            }
            b'g' => {
                let index = self.text_index()?;
                self.get(index)
            }
            b'q' => {
                let index = self.take(1)?[0];
                self.put(u64::from(index))
            }
            b'r' => {
                let index = u32::from_le_bytes(self.array()?);
                self.put(u64::from(index))
            }
            b'p' => {
                let index = self.text_index()?;
                self.put(index)
            }
            0x94 => {
                let index = self.memo.len() as u64;
                self.put(index)
            }
            _ => self.step_object(op),
        }
    }

    /// Globals, calls and persistent ids; everything else is refused.
    fn step_object(&mut self, op: u8) -> Step<()> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(&module, &name)
            }
            0x93 => {
                let name = self.pop_str("STACK_GLOBAL name")?;
                let module = self.pop_str("STACK_GLOBAL module")?;
                self.global(&module, &name)
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let node = self.reduce(callable, args)?;
                self.push_node(node);
                Ok(())
            }
            b'b' => self.build(),
            b'Q' => {
                let pid = self.pop()?;
                let storage = self.persistent(pid)?;
                self.push(Node::Storage(storage));
                Ok(())
            }
            _ => Err(forbidden_or_unknown(op)),
        }
    }

    fn take(&mut self, n: usize) -> Step<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.data.len()).ok_or(PickleProblem::Truncated)?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A length prefix of `width` bytes, checked against the bytes left.
    fn length(&mut self, width: usize, what: &str) -> Step<usize> {
        let mut raw = [0u8; 8];
        raw[..width].copy_from_slice(self.take(width)?);
        let n = u64::from_le_bytes(raw);
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(PickleProblem::TooLong(format!("a {what} of {n} bytes")));
        }
        usize::try_from(n).map_err(|_| PickleProblem::TooLong(format!("a {what} of {n} bytes")))
    }

    /// A text line (protocol 0 arguments), without its newline.
    fn line(&mut self) -> Step<String> {
        let rest = &self.data[self.pos..];
        let len = rest.iter().position(|&b| b == b'\n').ok_or(PickleProblem::Truncated)?;
        let text = std::str::from_utf8(&rest[..len])
            .map_err(|_| PickleProblem::Malformed("a text argument is not UTF-8".into()))?;
        self.pos += len + 1;
        Ok(text.to_owned())
    }

    fn push(&mut self, node: Node) {
        self.push_node(node);
    }

    fn push_node(&mut self, node: Node) {
        self.arena.push(node);
        self.stack.push(self.arena.len() - 1);
    }

    fn push_int(&mut self, value: i64) {
        self.push(Node::Int(value));
    }

    fn pop(&mut self) -> Step<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return malformed("pop from an empty stack (or across a MARK)");
        }
        self.stack.pop().map_or_else(|| malformed("pop from an empty stack"), Ok)
    }

    fn pop_mark(&mut self) -> Step<Vec<Id>> {
        let Some(mark) = self.marks.pop() else { return malformed("no MARK on the stack") };
        Ok(self.stack.split_off(mark))
    }

    fn pop_str(&mut self, what: &str) -> Step<String> {
        let id = self.pop()?;
        match &self.arena[id] {
            Node::Str(s) => Ok(s.clone()),
            other => malformed(format!("{what} must be a str, found {}", kind(other))),
        }
    }

    fn dup(&mut self) -> Step<()> {
        let top = self.pop()?;
        self.stack.extend([top, top]);
        Ok(())
    }

    fn get(&mut self, index: u64) -> Step<()> {
        let Some(&id) = self.memo.get(&index) else { return malformed(format!("memo entry {index} was never stored")) };
        self.stack.push(id);
        Ok(())
    }

    fn put(&mut self, index: u64) -> Step<()> {
        let Some(&top) = self.stack.last() else { return malformed("memo store from an empty stack") };
        self.memo.insert(index, top);
        Ok(())
    }

    fn text_index(&mut self) -> Step<u64> {
        let line = self.line()?;
        line.trim().parse().or_else(|_| malformed(format!("bad memo index {line:?}")))
    }

    /// `I`: a decimal int, or `01`/`00` for True/False.
    fn text_int(&mut self) -> Step<()> {
        let line = self.line()?;
        match line.as_str() {
            "01" => self.push(Node::Bool(true)),
            "00" => self.push(Node::Bool(false)),
            text => {
                let value = text.trim().parse().or_else(|_| malformed(format!("bad INT {text:?}")))?;
                self.push_int(value);
            }
        }
        Ok(())
    }

    /// `L`: a decimal long with an optional trailing `L` (protocol 0 and 1 write the legacy
    /// magic number this way).
    fn text_long(&mut self) -> Step<()> {
        let line = self.line()?;
        let text = line.trim().trim_end_matches('L');
        let node = match text.parse() {
            Ok(value) => Node::Int(value),
            Err(_) => {
                Node::BigInt(decimal_to_le(text).ok_or_else(|| PickleProblem::Malformed(format!("bad LONG {text:?}")))?)
            }
        };
        self.push(node);
        Ok(())
    }

    /// `LONG1` / `LONG4`: little-endian two's complement of a given length.
    fn long_bytes(&mut self, width: usize) -> Step<()> {
        let n = self.length(width, "long")?;
        let bytes = self.take(n)?.to_vec();
        let node = match bytes.len() {
            0 => Node::Int(0),
            1..=8 => {
                let fill = if bytes[bytes.len() - 1] & 0x80 == 0 { 0 } else { 0xff };
                let mut raw = [fill; 8];
                raw[..bytes.len()].copy_from_slice(&bytes);
                Node::Int(i64::from_le_bytes(raw))
            }
            _ => Node::BigInt(bytes),
        };
        self.push(node);
        Ok(())
    }

    fn text_float(&mut self) -> Step<()> {
        let line = self.line()?;
        let value = line.trim().parse().or_else(|_| malformed(format!("bad FLOAT {line:?}")))?;
        self.push(Node::Float(value));
        Ok(())
    }

    /// `BINUNICODE*` (UTF-8) and `BINSTRING*` (Python 2 str, read as text as Python 3 does).
    fn string(&mut self, width: usize, unicode: bool) -> Step<()> {
        let n = self.length(width, "string")?;
        let bytes = self.take(n)?;
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            // Python 2 str pickles decode as latin-1 at worst; keep that behaviour.
            Err(_) if !unicode => bytes.iter().map(|&b| char::from(b)).collect(),
            Err(_) => return malformed("a BINUNICODE string is not UTF-8"),
        };
        self.push(Node::Str(text));
        Ok(())
    }

    fn bytes(&mut self, width: usize) -> Step<()> {
        let n = self.length(width, "bytes object")?;
        let bytes = self.take(n)?.to_vec();
        self.push(Node::Bytes(bytes));
        Ok(())
    }

    fn small_tuple(&mut self, n: usize) -> Step<()> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return malformed(format!("TUPLE{n} needs {n} items on the stack"));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.push(Node::Tuple(items));
        Ok(())
    }

    fn target(&self, what: &str) -> Step<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.len().checked_sub(1) {
            Some(i) if i >= floor => Ok(self.stack[i]),
            _ => malformed(format!("{what} without a target on the stack")),
        }
    }

    fn append(&mut self, items: Vec<Id>) -> Step<()> {
        let target = self.target("APPEND")?;
        match &mut self.arena[target] {
            Node::List(list) => {
                list.extend(items);
                Ok(())
            }
            other => malformed(format!("APPEND to a {}", kind(other))),
        }
    }

    fn set_items(&mut self, pairs: Vec<(Id, Id)>) -> Step<()> {
        let target = self.target("SETITEM")?;
        match &mut self.arena[target] {
            Node::Dict(dict) => {
                dict.extend(pairs);
                Ok(())
            }
            other => malformed(format!("SETITEM on a {}", kind(other))),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Step<()> {
        let global =
            Global::resolve(module, name).ok_or_else(|| PickleProblem::ForbiddenGlobal(format!("{module}.{name}")))?;
        self.push(Node::Global(global));
        Ok(())
    }

    /// `BUILD`: only an `OrderedDict`'s instance dict (a state dict's `_metadata`), dropped.
    fn build(&mut self) -> Step<()> {
        let state = self.pop()?;
        let target = self.target("BUILD")?;
        match (&self.arena[target], &self.arena[state]) {
            (Node::Dict(_), Node::Dict(_) | Node::None) => Ok(()),
            (target, state) => malformed(format!("BUILD of a {} with a {} state", kind(target), kind(state))),
        }
    }

    fn reduce(&mut self, callable: Id, args: Id) -> Step<Node> {
        let Node::Global(global) = self.arena[callable] else {
            return malformed(format!("REDUCE calls a {}", kind(&self.arena[callable])));
        };
        let Node::Tuple(args) = &self.arena[args] else {
            return malformed(format!("REDUCE arguments are a {}, not a tuple", kind(&self.arena[args])));
        };
        let args = args.clone();
        match global {
            Global::OrderedDict => self.ordered_dict(&args),
            Global::RebuildTensor | Global::RebuildTensorV2 => self.rebuild_tensor(global, &args),
            Global::RebuildParameter => self.rebuild_parameter(&args),
            Global::StorageType(dtype) => malformed(format!("REDUCE calls the storage type of {dtype}")),
        }
    }

    /// `OrderedDict()` or `OrderedDict([(key, value), ...])`.
    fn ordered_dict(&self, args: &[Id]) -> Step<Node> {
        match args {
            [] => Ok(Node::Dict(Vec::new())),
            [items] => {
                let (Node::List(items) | Node::Tuple(items)) = &self.arena[*items] else {
                    return malformed("OrderedDict(items) needs a list of pairs");
                };
                let pairs = items.iter().map(|&pair| match &self.arena[pair] {
                    Node::List(kv) | Node::Tuple(kv) if kv.len() == 2 => Ok((kv[0], kv[1])),
                    other => malformed(format!("OrderedDict item is a {}, not a pair", kind(other))),
                });
                pairs.collect::<Step<Vec<_>>>().map(Node::Dict)
            }
            _ => malformed(format!("OrderedDict takes at most 1 argument, got {}", args.len())),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`
    /// (`torch/_utils.py`), or the 4-argument `_rebuild_tensor`.
    fn rebuild_tensor(&self, global: Global, args: &[Id]) -> Step<Node> {
        let arity_ok = match global {
            Global::RebuildTensor => args.len() == 4,
            _ => args.len() == 6 || args.len() == 7,
        };
        if !arity_ok {
            return malformed(format!("_rebuild_tensor got {} arguments", args.len()));
        }
        let Node::Storage(storage) = &self.arena[args[0]] else {
            return malformed(format!("_rebuild_tensor's storage is a {}", kind(&self.arena[args[0]])));
        };
        let offset = self.count(args[1], "storage offset")?;
        let shape = self.counts(args[2], "size")?;
        let stride = self.counts(args[3], "stride")?;
        if shape.len() != stride.len() {
            return malformed(format!("size has {} dimensions but stride has {}", shape.len(), stride.len()));
        }
        if args.len() >= 6 {
            self.expect_flag_and_hooks(args[4], args[5])?;
        }
        Ok(Node::Tensor(TensorView { storage: storage.clone(), offset, shape, stride }))
    }

    fn expect_flag_and_hooks(&self, requires_grad: Id, hooks: Id) -> Step<()> {
        if !matches!(self.arena[requires_grad], Node::Bool(_)) {
            return malformed(format!("requires_grad is a {}", kind(&self.arena[requires_grad])));
        }
        match &self.arena[hooks] {
            Node::Dict(_) | Node::None => Ok(()),
            other => malformed(format!("backward hooks are a {}", kind(other))),
        }
    }

    /// `_rebuild_parameter(data, requires_grad, backward_hooks)`: the parameter's tensor.
    fn rebuild_parameter(&self, args: &[Id]) -> Step<Node> {
        let [data, requires_grad, hooks] = args else {
            return malformed(format!("_rebuild_parameter got {} arguments", args.len()));
        };
        self.expect_flag_and_hooks(*requires_grad, *hooks)?;
        match &self.arena[*data] {
            tensor @ Node::Tensor(_) => Ok(tensor.clone()),
            other => malformed(format!("_rebuild_parameter's data is a {}", kind(other))),
        }
    }

    fn count(&self, id: Id, what: &str) -> Step<u64> {
        match self.arena[id] {
            Node::Int(n) => u64::try_from(n).or_else(|_| malformed(format!("{what} {n} is negative"))),
            ref other => malformed(format!("{what} is a {}, not an int", kind(other))),
        }
    }

    fn counts(&self, id: Id, what: &str) -> Step<Vec<u64>> {
        match &self.arena[id] {
            Node::Tuple(items) | Node::List(items) => items.iter().map(|&i| self.count(i, what)).collect(),
            other => malformed(format!("{what} is a {}, not a tuple", kind(other))),
        }
    }

    /// A persistent id `('storage', torch.<Type>Storage, key, location, numel[, view])`,
    /// as `torch.serialization` writes in both formats.
    fn persistent(&self, pid: Id) -> Step<StorageRef> {
        let Node::Tuple(fields) = &self.arena[pid] else {
            return malformed(format!("persistent id is a {}, not a tuple", kind(&self.arena[pid])));
        };
        match fields.first().map(|&f| &self.arena[f]) {
            Some(Node::Str(tag)) if tag == "storage" => {}
            Some(Node::Str(tag)) if tag == "module" => {
                return malformed("a pickled nn.Module (persistent id `module`): save its state_dict() instead");
            }
            _ => return malformed("persistent id is not a ('storage', ...) tuple"),
        }
        let (5 | 6) = fields.len() else {
            return malformed(format!("storage persistent id has {} fields", fields.len()));
        };
        let Node::Global(Global::StorageType(dtype)) = self.arena[fields[1]] else {
            return malformed("storage persistent id does not name a torch storage type");
        };
        let key = self.key(fields[2])?;
        let numel = self.count(fields[4], "storage size")?;
        let view = match fields.get(5).map(|&v| &self.arena[v]) {
            None | Some(Node::None) => None,
            Some(Node::Tuple(view)) if view.len() == 3 => {
                Some((self.key(view[0])?, self.count(view[1], "view offset")?, self.count(view[2], "view size")?))
            }
            Some(other) => return malformed(format!("storage view metadata is a {}", kind(other))),
        };
        Ok(StorageRef { key, dtype, numel, view })
    }

    fn key(&self, id: Id) -> Step<String> {
        match &self.arena[id] {
            Node::Str(s) if s.len() > MAX_KEY_LEN => malformed(format!("storage key of {} bytes", s.len())),
            Node::Str(s) => Ok(s.clone()),
            Node::Int(n) => Ok(n.to_string()),
            other => malformed(format!("storage key is a {}", kind(other))),
        }
    }
}

/// Longest decimal LONG accepted beyond 64 bits (the conversion is quadratic in digits).
const MAX_LONG_DIGITS: usize = 64;

/// A non-negative decimal as minimal little-endian two's complement bytes, as `LONG1`
/// writes it; `None` for anything else or more than [`MAX_LONG_DIGITS`] digits.
fn decimal_to_le(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() > MAX_LONG_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    for digit in text.bytes().map(|b| b - b'0') {
        let mut carry = u16::from(digit);
        for byte in &mut out {
            let v = u16::from(*byte) * 10 + carry;
            *byte = v.to_le_bytes()[0];
            carry = v >> 8;
        }
        if carry > 0 {
            out.push(carry.to_le_bytes()[0]);
        }
    }
    if out.last().is_some_and(|&top| top & 0x80 != 0) {
        out.push(0);
    }
    Some(out)
}

/// Pair up a `SETITEMS`/`DICT` run: key, value, key, value, ...
fn pairs(items: &[Id]) -> Step<Vec<(Id, Id)>> {
    if items.len() % 2 != 0 {
        return malformed("odd number of items for a dict");
    }
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

/// A short name for a node's type, for error messages.
pub(crate) fn kind(node: &Node) -> &'static str {
    match node {
        Node::None => "None",
        Node::Bool(_) => "bool",
        Node::Int(_) | Node::BigInt(_) => "int",
        Node::Float(_) => "float",
        Node::Str(_) => "str",
        Node::Bytes(_) => "bytes",
        Node::List(_) => "list",
        Node::Tuple(_) => "tuple",
        Node::Dict(_) => "dict",
        Node::Global(_) => "global",
        Node::Storage(_) => "storage",
        Node::Tensor(_) => "tensor",
    }
}

/// The error for an opcode outside the supported set: its name if pickle has it.
fn forbidden_or_unknown(op: u8) -> PickleProblem {
    let name = match op {
        b'P' => "PERSID",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return PickleProblem::UnknownOpcode(op),
    };
    PickleProblem::ForbiddenOpcode(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(bytes: &[u8]) -> (Vec<Node>, Id) {
        let out = unpickle(bytes).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(out.end, bytes.len());
        (out.arena, out.root)
    }

    fn problem(bytes: &[u8]) -> PickleProblem {
        unpickle(bytes).expect_err("must fail").1
    }

    #[test]
    fn plain_values_in_binary_and_text_opcodes() {
        // {'a': 1, 'b': -2.5, 'c': [True, None]} in protocol 2 opcodes.
        let (arena, r) = root(b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bG\xc0\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00c]q\x01(\x88Neu.");
        let Node::Dict(entries) = &arena[r] else { panic!() };
        let values: Vec<&Node> = entries.iter().map(|&(_, v)| &arena[v]).collect();
        assert_eq!(values[0], &Node::Int(1));
        assert_eq!(values[1], &Node::Float(-2.5));
        assert!(matches!(values[2], Node::List(items) if items.len() == 2));
        // Protocol 0: INT, LONG, FLOAT, PUT/GET, True via I01.
        let (arena, r) = root(b"(I42\nL-7L\nF0.25\nI01\np0\ng0\nt.");
        let Node::Tuple(items) = &arena[r] else { panic!() };
        let values: Vec<&Node> = items.iter().map(|&i| &arena[i]).collect();
        let want = [Node::Int(42), Node::Int(-7), Node::Float(0.25), Node::Bool(true), Node::Bool(true)];
        assert_eq!(values, want.iter().collect::<Vec<_>>());
    }

    #[test]
    fn long1_keeps_sign_and_wide_values() {
        let (arena, r) = root(b"\x80\x02\x8a\x01\xff.");
        assert_eq!(arena[r], Node::Int(-1));
        let magic = Node::BigInt(vec![0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
        let (arena, r) = root(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
        assert_eq!(arena[r], magic);
        // The same number as protocol 1 writes it: a decimal LONG.
        let (arena, r) = root(b"L119547037146038801333356L\n.");
        assert_eq!(arena[r], magic);
        let (arena, r) = root(b"L18446744073709551615L\n.");
        assert_eq!(arena[r], Node::BigInt(vec![0xff; 8].into_iter().chain([0]).collect()));
        assert!(matches!(problem(b"L-99999999999999999999L\n."), PickleProblem::Malformed(_)));
        assert!(matches!(problem(&[&b"L"[..], &[b'9'; 65], b"\n."].concat()), PickleProblem::Malformed(_)));
    }

    #[test]
    fn the_memo_shares_objects_filled_after_they_were_stored() {
        // l = [d, d] with d empty when appended, then d['a'] = 1 through BINGET.
        let (arena, r) = root(b"\x80\x02]q\x00(}q\x01h\x01eh\x01X\x01\x00\x00\x00aK\x01s0.");
        let Node::List(items) = &arena[r] else { panic!() };
        assert_eq!(items[0], items[1]);
        assert!(matches!(&arena[items[0]], Node::Dict(d) if d.len() == 1));
    }

    #[test]
    fn allowed_globals_build_ordered_dicts_via_stack_global() {
        let (arena, r) = root(b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94.");
        assert_eq!(arena[r], Node::Dict(Vec::new()));
    }

    #[test]
    fn other_globals_are_refused_by_name() {
        assert_eq!(
            problem(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R."),
            PickleProblem::ForbiddenGlobal("os.system".into())
        );
        let stack_global = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93X\x03\x00\x00\x001+1\x85R.";
        assert_eq!(problem(stack_global), PickleProblem::ForbiddenGlobal("builtins.eval".into()));
        assert_eq!(problem(b"ctorch\nload\n."), PickleProblem::ForbiddenGlobal("torch.load".into()));
        assert_eq!(
            problem(b"cnumpy.core.multiarray\nscalar\n."),
            PickleProblem::ForbiddenGlobal("numpy.core.multiarray.scalar".into())
        );
    }

    #[test]
    fn object_building_opcodes_are_refused_by_name() {
        assert_eq!(problem(b"(ios\nsystem\n."), PickleProblem::ForbiddenOpcode("INST"));
        assert_eq!(problem(b"\x80\x02N)\x81."), PickleProblem::ForbiddenOpcode("NEWOBJ"));
        assert_eq!(problem(b"\x80\x04\x8f."), PickleProblem::ForbiddenOpcode("EMPTY_SET"));
        assert_eq!(problem(b"Pfoo\n."), PickleProblem::ForbiddenOpcode("PERSID"));
        assert_eq!(problem(b"\x80\x02\xff"), PickleProblem::UnknownOpcode(0xff));
    }

    #[test]
    fn stack_mark_and_memo_misuse_are_errors() {
        for bad in [
            &b"\x80\x02."[..],        // STOP on an empty stack
            b"\x80\x02N(0.",          // POP across a MARK
            b"\x80\x02Ne.",           // APPENDS without a MARK
            b"\x80\x02h\x05.",        // BINGET of a slot never stored
            b"\x80\x02q\x00.",        // BINPUT from an empty stack
            b"\x80\x02K\x01(K\x02a.", // APPEND to an int (the target is below the MARK)
            b"\x80\x02K\x01K\x02s.",  // SETITEM without a dict
            b"\x80\x02}(K\x01u.",     // SETITEMS with an odd count
            b"\x80\x02K\x01)R.",      // REDUCE calling an int
            b"\x80\x02\x85.",         // TUPLE1 of nothing
            b"\x80\x02K\x01}b.",      // BUILD on an int
        ] {
            assert!(matches!(problem(bad), PickleProblem::Malformed(_)), "{bad:?}: {:?}", problem(bad));
        }
    }

    #[test]
    fn lengths_beyond_the_data_are_refused_before_allocating() {
        assert!(matches!(problem(b"\x80\x02X\xff\xff\xff\x7fab"), PickleProblem::TooLong(_)));
        assert!(matches!(problem(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff"), PickleProblem::TooLong(_)));
        assert_eq!(problem(b"\x80\x02K"), PickleProblem::Truncated);
        assert_eq!(problem(b"\x80\x02N"), PickleProblem::Truncated);
        assert_eq!(problem(b"cos\nsys"), PickleProblem::Truncated);
    }

    /// `_rebuild_tensor_v2` over a persistent storage, as torch writes it.
    fn tensor_pickle(size: &[u8], stride: &[u8], extra: &[u8]) -> Vec<u8> {
        let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQK\x01".to_vec();
        p.extend_from_slice(size);
        p.extend_from_slice(stride);
        p.extend_from_slice(extra);
        p.extend_from_slice(b"tR.");
        p
    }

    #[test]
    fn rebuild_tensor_v2_reads_the_view() {
        let (arena, r) =
            root(&tensor_pickle(b"K\x02K\x02\x86", b"K\x01K\x02\x86", b"\x89ccollections\nOrderedDict\n)R"));
        let Node::Tensor(view) = &arena[r] else { panic!("{:?}", arena[r]) };
        assert_eq!(
            (view.offset, view.shape.as_slice(), view.stride.as_slice()),
            (1, [2, 2].as_slice(), [1, 2].as_slice())
        );
        assert_eq!((view.storage.key.as_str(), view.storage.dtype, view.storage.numel), ("0", DType::F32, 6));
    }

    #[test]
    fn rebuild_tensor_v2_checks_its_arguments() {
        let hooks = b"\x89ccollections\nOrderedDict\n)R";
        for (size, stride, extra) in [
            (&b"K\x02\x85"[..], &b"K\x01K\x01\x86"[..], &hooks[..]), // rank mismatch
            (b"J\xff\xff\xff\xff\x85", b"K\x01\x85", hooks),         // negative size
            (b"K\x02\x85", b"K\x01\x85", b"\x89"),                   // missing hooks
            (b"K\x02\x85", b"K\x01\x85", b"K\x00N"),                 // requires_grad not a bool
        ] {
            assert!(matches!(problem(&tensor_pickle(size, stride, extra)), PickleProblem::Malformed(_)));
        }
    }
}
