//! Errors: every failure names the file and says what is wrong with it.

use std::fmt;

/// A checkpoint that could not be read: the file's name and what is wrong.
#[derive(Debug)]
pub struct Error {
    /// The file as the caller named it (a path, or the name given to [`crate::load_bytes`]).
    pub file: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What is wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The file could not be opened or read.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// Neither a zip archive nor a legacy `torch.save` stream.
    #[error("not a torch.save checkpoint: {0}")]
    NotTorch(String),
    /// A zip archive whose layout is not the one `torch.save` writes, or a damaged one.
    #[error("bad zip archive: {0}")]
    Zip(String),
    /// A pickle (named by `part`) that this reader refuses or cannot parse.
    #[error("{part}, byte {offset}: {problem}")]
    Pickle {
        /// Which pickle: `archive/data.pkl`, or one of the legacy stream's pickles.
        part: String,
        /// Byte offset of the failing opcode (in the file for the legacy format, in the
        /// zip entry for the zip format).
        offset: usize,
        /// What is wrong there.
        problem: PickleProblem,
    },
    /// A storage that is missing, too short, or otherwise unusable.
    #[error("storage `{key}`: {problem}")]
    Storage {
        /// The storage's key (its name under `data/`, or its legacy key).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A tensor whose layout does not fit its storage, or a value that is not data.
    #[error("`{name}`: {problem}")]
    Value {
        /// Where the value sits, as a dotted name (empty for the root).
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The file asks for more memory than its own length can justify.
    #[error("refusing to allocate {bytes} bytes for {what}: more than a file of this length can hold")]
    TooLarge {
        /// What the allocation was for.
        what: String,
        /// How many bytes it asked for (saturated at `u64::MAX`).
        bytes: u64,
    },
    /// [`crate::Checkpoint::require_tensors`] found no tensor under the prefix.
    #[error("no tensors under `{prefix}`; the file's top-level entries are: {available}")]
    NoTensors {
        /// The prefix asked for.
        prefix: String,
        /// The top-level keys that hold tensors, comma-separated.
        available: String,
    },
    /// Writing a safetensors file failed.
    #[error("cannot write safetensors: {0}")]
    Write(String),
}

/// What is wrong with one pickle opcode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleProblem {
    /// The pickle ends in the middle of an opcode or before `STOP`.
    #[error("the pickle is truncated")]
    Truncated,
    /// A byte that is no pickle opcode at all.
    #[error("unknown pickle opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    /// A real pickle opcode that a `torch.save` of tensors and plain data never needs.
    #[error("pickle opcode {0} is not allowed: it is not needed for tensors and plain data")]
    ForbiddenOpcode(&'static str),
    /// A global outside the allow-list (the pickle would import and maybe call it in Python).
    #[error(
        "pickle global `{0}` is not allowed: only {allowed} are (nothing is ever executed)",
        allowed = crate::pickle::ALLOWED_GLOBALS
    )]
    ForbiddenGlobal(String),
    /// Stack, mark or memo misuse, or an argument of the wrong type.
    #[error("malformed pickle: {0}")]
    Malformed(String),
    /// A length or count larger than what is left of the file.
    #[error("{0} is larger than the rest of the file")]
    TooLong(String),
}
