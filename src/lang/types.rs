//! The types of declared parameters: primitives, lists, optionals, unions,
//! stage output types (artifacts) and constructor families.

use std::fmt;

/// A parameter's declared type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// A 64-bit integer.
    Int,
    /// A float; an int literal is accepted and widened.
    Float,
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// A local file or folder given as a string, resolved against the declaring file.
    Path,
    /// `list<T>`.
    List(Box<Type>),
    /// `T?`: may be `none` (the default when no default is declared).
    Optional(Box<Type>),
    /// `A | B`: any of the alternatives, the first that fits.
    Union(Vec<Type>),
    /// The output of a stage kind (`files`, `dataset`, `model`, ...): a stage reference.
    /// `files` also accepts a path string.
    Artifact(String),
    /// A constructor family declared with `type` (`weighting`, `net`, ...).
    Family(String),
}

/// The artifact type that also accepts a local path string.
pub const FILES: &str = "files";

impl Type {
    /// The primitive named `name`, if it is one.
    #[must_use]
    pub fn primitive(name: &str) -> Option<Self> {
        Some(match name {
            "int" => Self::Int,
            "float" => Self::Float,
            "str" => Self::Str,
            "bool" => Self::Bool,
            "path" => Self::Path,
            _ => return None,
        })
    }

    /// The alternatives this type offers: itself, or a union's members (flattened).
    #[must_use]
    pub fn alternatives(&self) -> Vec<&Type> {
        match self {
            Self::Union(ts) => ts.iter().flat_map(Type::alternatives).collect(),
            t => vec![t],
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int => f.write_str("int"),
            Self::Float => f.write_str("float"),
            Self::Str => f.write_str("str"),
            Self::Bool => f.write_str("bool"),
            Self::Path => f.write_str("path"),
            Self::List(t) => write!(f, "list<{t}>"),
            Self::Optional(t) if matches!(**t, Self::Union(_)) => write!(f, "({t})?"),
            Self::Optional(t) => write!(f, "{t}?"),
            Self::Union(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    write!(f, "{}{t}", if i > 0 { " | " } else { "" })?;
                }
                Ok(())
            }
            Self::Artifact(n) | Self::Family(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_written() {
        let t = Type::Union(vec![Type::Artifact("files".into()), Type::Artifact("dataset".into())]);
        assert_eq!(t.to_string(), "files | dataset");
        assert_eq!(Type::Optional(Box::new(Type::Str)).to_string(), "str?");
        assert_eq!(Type::List(Box::new(Type::Int)).to_string(), "list<int>");
        assert_eq!(Type::Optional(Box::new(t.clone())).to_string(), "(files | dataset)?");
        assert_eq!(t.alternatives().len(), 2);
    }
}
