//! Typed access to a constructor value's arguments (`unet { mults = [1, 2] }`),
//! with errors that name the parameter path (`net.mults`). No libtorch.

use std::collections::BTreeMap;

use super::error::ModelError;
use crate::lang::value::Value;

/// The arguments of one constructor value, read under a parameter prefix.
pub(crate) struct Args<'a> {
    /// The parameter holding the constructor (`net`).
    prefix: &'a str,
    /// The constructor's arguments.
    args: &'a BTreeMap<String, Value>,
}

impl<'a> Args<'a> {
    /// Reads `args` of the constructor held by parameter `prefix`.
    pub(crate) fn new(prefix: &'a str, args: &'a BTreeMap<String, Value>) -> Self {
        Self { prefix, args }
    }

    /// The path of argument `key`: `net.mults`.
    pub(crate) fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// An error for argument `key`.
    pub(crate) fn error(&self, key: &str, message: impl Into<String>) -> ModelError {
        ModelError::invalid(&self.path(key), message)
    }

    /// Argument `key` (the stdlib declares its default, so it is normally present;
    /// `default` covers a constructor declared without it).
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.args.get(key).filter(|v| **v != Value::None)
    }

    /// An integer argument.
    pub(crate) fn int(&self, key: &str, default: i64) -> Result<i64, ModelError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_int().ok_or_else(|| self.error(key, format!("expected an integer, found {v}"))),
        }
    }

    /// A number argument (ints widen).
    pub(crate) fn float(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.error(key, format!("expected a number, found {v}"))),
        }
    }

    /// A boolean argument.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, ModelError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.error(key, format!("expected true or false, found {v}"))),
        }
    }

    /// A list-of-integers argument.
    pub(crate) fn ints(&self, key: &str, default: &[i64]) -> Result<Vec<i64>, ModelError> {
        let Some(v) = self.get(key) else { return Ok(default.to_vec()) };
        let wrong = || self.error(key, format!("expected a list of integers, found {v}"));
        match v {
            Value::List(items) => items.iter().map(|i| i.as_int().ok_or_else(wrong)).collect(),
            _ => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("depth".to_string(), Value::Int(12)),
            ("lr".to_string(), Value::Int(1)),
            ("mults".to_string(), Value::List(vec![Value::Int(1), Value::Int(2)])),
            ("bad".to_string(), Value::List(vec![Value::Int(1), Value::Str("x".into())])),
            ("flag".to_string(), Value::Bool(true)),
            ("unset".to_string(), Value::None),
        ])
    }

    #[test]
    fn reads_typed_values_and_defaults() {
        let map = args();
        let a = Args::new("net", &map);
        assert_eq!(a.int("depth", 0), Ok(12));
        assert_eq!(a.float("lr", 0.0), Ok(1.0));
        assert_eq!(a.ints("mults", &[]), Ok(vec![1, 2]));
        assert_eq!(a.bool("flag", false), Ok(true));
        assert_eq!(a.int("unset", 7), Ok(7));
        assert_eq!(a.int("absent", 3), Ok(3));
    }

    #[test]
    fn wrong_types_name_the_parameter() {
        let map = args();
        let a = Args::new("net", &map);
        let e = a.ints("bad", &[]).unwrap_err().into_param();
        assert_eq!(e.0, "net.bad");
        assert!(e.1.contains("list of integers"), "{}", e.1);
        assert_eq!(a.bool("depth", false).unwrap_err().into_param().0, "net.depth");
        assert_eq!(a.int("mults", 0).unwrap_err().into_param().0, "net.mults");
    }
}
