//! Resolved parameter values: what the analyzer hands to the graph, the cache
//! key and the stage implementations. Serializes canonically (maps sorted).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A fully resolved parameter value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// An integer (`500k` is 500000).
    Int(i64),
    /// A float (`1e-4`).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// A local file or folder, resolved against the declaring `.msnr` file.
    /// The cache key holds its content hash, not the path.
    Path(PathBuf),
    /// A list.
    List(Vec<Value>),
    /// A constructor value such as `min_snr { gamma = 5 }`, defaults filled in.
    Ctor {
        /// The constructor's name (`min_snr`).
        name: String,
        /// Its arguments, every declared one present.
        args: BTreeMap<String, Value>,
    },
    /// A reference to another stage's output: an edge of the DAG.
    Stage(String),
    /// An optional parameter left unset.
    None,
}

impl Value {
    /// The integer, if this is one.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as a float (ints widen).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Every stage this value refers to, depth first.
    pub fn stage_refs<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Stage(s) => out.push(s),
            Self::List(items) => items.iter().for_each(|v| v.stage_refs(out)),
            Self::Ctor { args, .. } => args.values().for_each(|v| v.stage_refs(out)),
            _ => {}
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Path(p) => write!(f, "{:?}", p.display().to_string()),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Self::Ctor { name, args } if args.is_empty() => write!(f, "{name} {{}}"),
            Self::Ctor { name, args } => {
                write!(f, "{name} {{")?;
                for (i, (k, v)) in args.iter().enumerate() {
                    write!(f, "{} {k} = {v}", if i > 0 { "," } else { "" })?;
                }
                f.write_str(" }")
            }
            Self::Stage(s) => f.write_str(s),
            Self::None => f.write_str("none"),
        }
    }
}
