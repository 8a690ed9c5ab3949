//! Reading a stage's resolved parameters (the analyzer's [`Value`]s, every declared one
//! present with the stdlib's default filled in) into its kind's typed parameter struct.
//!
//! A [`Reader`] collects every problem it meets instead of stopping at the first, each
//! named by its parameter path (`weighting.gamma`), so `msnr check` reports them all at
//! the parameters' spans. Defaults are never repeated here: a missing parameter means
//! the stdlib and the implementation disagree, and says so.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::lang::{codes, Value};

/// What is known about a stage's output before it runs (for the checker): the
/// channels and size of a dataset (or of a model's data), when its parameters fix them,
/// and whether its items are VAE latents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Channels, when known.
    pub channels: Option<u32>,
    /// Height and width, when known.
    pub size: Option<(u32, u32)>,
    /// `Some(f)` when the items are latents of a VAE whose images are `f` times larger
    /// (a `vae_encode` output, or a model trained on one); `None` for images or unknown.
    pub latent_factor: Option<u32>,
}

impl Shape {
    /// Nothing known.
    pub const UNKNOWN: Self = Self { channels: None, size: None, latent_factor: None };

    /// Images (not latents) of `channels` and `size`, as far as known.
    #[must_use]
    pub fn images(channels: Option<u32>, size: Option<(u32, u32)>) -> Self {
        Self { channels, size, latent_factor: None }
    }
}

/// One unusable parameter value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter path: `batch`, `weighting.gamma`, `net.mults`.
    pub param: String,
    /// What is wrong, with the value found.
    pub message: String,
    /// What to do about it, when there is more to say than the message.
    pub help: Option<String>,
    /// The diagnostic code ([`codes::INVALID_PARAMETER`] unless a kind says otherwise).
    pub code: &'static str,
}

impl ParamError {
    /// An error for parameter path `param`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self { param: param.into(), message: message.into(), help: None, code: codes::INVALID_PARAMETER }
    }

    /// Sets the diagnostic code.
    #[must_use]
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// Adds a help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The top-level parameter of the path (`weighting` for `weighting.gamma`).
    #[must_use]
    pub fn top(&self) -> &str {
        self.param.split('.').next().unwrap_or(&self.param)
    }
}

/// A file-tree parameter (`files`): a local path, or another stage's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A local file or folder.
    Path(PathBuf),
    /// The output folder of the named stage.
    Stage(String),
}

/// A constructor value being read: `min_snr { gamma = 5 }` held by parameter `weighting`.
#[derive(Clone, Copy, Debug)]
pub struct Ctor<'a> {
    /// The parameter path holding it (`weighting`, `net`).
    pub path: &'a str,
    /// The constructor's name (`min_snr`).
    pub name: &'a str,
    args: &'a BTreeMap<String, Value>,
}

/// Reads one stage's parameters, collecting every error.
pub struct Reader<'a> {
    params: &'a BTreeMap<String, Value>,
    inputs: &'a dyn Fn(&str) -> Shape,
    device: Option<&'a str>,
    errors: Vec<ParamError>,
}

impl<'a> Reader<'a> {
    /// A reader over `params`; `inputs` gives the output shape of an upstream stage by
    /// name; `device` is the resolved device (`cpu`/`cuda`) of a torch stage, when known.
    pub fn new(
        params: &'a BTreeMap<String, Value>,
        inputs: &'a dyn Fn(&str) -> Shape,
        device: Option<&'a str>,
    ) -> Self {
        Self { params, inputs, device, errors: Vec::new() }
    }

    /// The resolved device (`cpu` or `cuda`), when this is a torch stage whose device resolves.
    #[must_use]
    pub fn device(&self) -> Option<&'a str> {
        self.device
    }

    /// Records an error; returns `None` so a reader can `return r.fail(..)`.
    pub fn fail<T>(&mut self, error: ParamError) -> Option<T> {
        self.errors.push(error);
        None
    }

    /// The errors so far, or `value` when there are none.
    ///
    /// # Errors
    /// Every error recorded, in the order met.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ParamError>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ if self.errors.is_empty() => Err(vec![ParamError::new("?", "could not be read (no reason recorded)")]),
            _ => Err(self.errors),
        }
    }

    /// The shape of the stage that parameter `name` refers to (unknown for anything else).
    #[must_use]
    pub fn input_shape(&self, name: &str) -> Shape {
        match self.params.get(name) {
            Some(Value::Stage(stage)) => (self.inputs)(stage),
            _ => Shape::UNKNOWN,
        }
    }

    /// Parameter `name` as written or defaulted.
    pub fn value(&mut self, name: &str) -> Option<&'a Value> {
        let params = self.params;
        match params.get(name) {
            Some(v) => Some(v),
            None => self.fail(ParamError::new(name, "missing: the stdlib does not declare it for this kind")),
        }
    }

    /// An integer parameter within `range`.
    pub fn int(&mut self, name: &str, range: impl RangeBounds<i64> + Describe) -> Option<i64> {
        let v = self.value(name);
        self.int_at(name, v, range)
    }

    /// A number parameter (ints widen) within `range`.
    pub fn float(&mut self, name: &str, range: impl RangeBounds<f64> + Describe) -> Option<f64> {
        let v = self.value(name);
        self.float_at(name, v, range)
    }

    /// A boolean parameter.
    pub fn bool(&mut self, name: &str) -> Option<bool> {
        let v = self.value(name)?;
        v.as_bool().or_else(|| self.fail(ParamError::new(name, format!("expected true or false, found {v}"))))
    }

    /// A string parameter.
    pub fn str(&mut self, name: &str) -> Option<&'a str> {
        let v = self.value(name)?;
        v.as_str().or_else(|| self.fail(ParamError::new(name, format!("expected a string, found {v}"))))
    }

    /// An optional string parameter (`str?`): `None` inside when unset.
    pub fn opt_str(&mut self, name: &str) -> Option<Option<String>> {
        match self.value(name)? {
            Value::None => Some(None),
            Value::Str(s) => Some(Some(s.clone())),
            v => self.fail(ParamError::new(name, format!("expected a string or none, found {v}"))),
        }
    }

    /// A `files` parameter: a local path or a stage reference.
    pub fn source(&mut self, name: &str) -> Option<Source> {
        match self.value(name)? {
            Value::Path(p) => Some(Source::Path(p.clone())),
            Value::Stage(s) => Some(Source::Stage(s.clone())),
            v => self.fail(ParamError::new(name, format!("expected a path or a stage, found {v}"))),
        }
    }

    /// An optional `files` parameter (`files?`): `None` inside when unset.
    pub fn opt_source(&mut self, name: &str) -> Option<Option<Source>> {
        match self.params.get(name) {
            Some(Value::None) => Some(None),
            _ => self.source(name).map(Some),
        }
    }

    /// A constructor parameter (`weighting = min_snr { .. }`).
    pub fn ctor(&mut self, name: &'a str) -> Option<Ctor<'a>> {
        match self.value(name)? {
            Value::Ctor { name: ctor, args } => Some(Ctor { path: name, name: ctor, args }),
            v => self.fail(ParamError::new(name, format!("expected a constructor value, found {v}"))),
        }
    }

    /// Argument `key` of constructor `c`, an integer within `range`.
    pub fn arg_int(&mut self, c: Ctor<'a>, key: &str, range: impl RangeBounds<i64> + Describe) -> Option<i64> {
        let v = self.arg(c, key);
        self.int_at(&format!("{}.{key}", c.path), v, range)
    }

    /// Argument `key` of constructor `c`, a number within `range`.
    pub fn arg_float(&mut self, c: Ctor<'a>, key: &str, range: impl RangeBounds<f64> + Describe) -> Option<f64> {
        let v = self.arg(c, key);
        self.float_at(&format!("{}.{key}", c.path), v, range)
    }

    /// Argument `key` of constructor `c`, a boolean.
    pub fn arg_bool(&mut self, c: Ctor<'a>, key: &str) -> Option<bool> {
        let v = self.arg(c, key)?;
        let path = format!("{}.{key}", c.path);
        v.as_bool().or_else(|| self.fail(ParamError::new(path, format!("expected true or false, found {v}"))))
    }

    /// Argument `key` of constructor `c`, a list of numbers (ints widen).
    pub fn arg_floats(&mut self, c: Ctor<'a>, key: &str) -> Option<Vec<f64>> {
        self.arg_list(c, key, "numbers", Value::as_f64)
    }

    /// Argument `key` of constructor `c`, a list of integers.
    pub fn arg_ints(&mut self, c: Ctor<'a>, key: &str) -> Option<Vec<i64>> {
        self.arg_list(c, key, "integers", Value::as_int)
    }

    /// An error at argument `key` of constructor `c`.
    pub fn arg_fail<T>(&mut self, c: Ctor<'a>, key: &str, message: impl Into<String>) -> Option<T> {
        self.fail(ParamError::new(format!("{}.{key}", c.path), message))
    }

    fn arg(&mut self, c: Ctor<'a>, key: &str) -> Option<&'a Value> {
        match c.args.get(key) {
            Some(v) => Some(v),
            None => self.arg_fail(c, key, format!("missing: the stdlib does not declare it for `{}`", c.name)),
        }
    }

    fn arg_list<T>(&mut self, c: Ctor<'a>, key: &str, what: &str, item: fn(&Value) -> Option<T>) -> Option<Vec<T>> {
        let v = self.arg(c, key)?;
        let items = match v {
            Value::List(items) => items.iter().map(item).collect::<Option<Vec<T>>>(),
            _ => None,
        };
        items.or_else(|| self.arg_fail(c, key, format!("expected a list of {what}, found {v}")))
    }

    fn int_at(&mut self, path: &str, v: Option<&Value>, range: impl RangeBounds<i64> + Describe) -> Option<i64> {
        let v = v?;
        let Some(i) = v.as_int() else {
            return self.fail(ParamError::new(path, format!("expected an integer, found {v}")));
        };
        if range.contains(&i) {
            Some(i)
        } else {
            self.fail(ParamError::new(path, format!("must be {}, got {i}", range.describe())))
        }
    }

    fn float_at(&mut self, path: &str, v: Option<&Value>, range: impl RangeBounds<f64> + Describe) -> Option<f64> {
        let v = v?;
        let Some(x) = v.as_f64() else {
            return self.fail(ParamError::new(path, format!("expected a number, found {v}")));
        };
        if x.is_finite() && range.contains(&x) {
            Some(x)
        } else {
            self.fail(ParamError::new(path, format!("must be {}, got {x}", range.describe())))
        }
    }
}

/// A range that can say what it accepts ("in [0, 1)", ">= 1").
pub trait Describe {
    /// The accepted values, in words.
    fn describe(&self) -> String;
}

impl<T: std::fmt::Display> Describe for std::ops::RangeFrom<T> {
    fn describe(&self) -> String {
        format!(">= {}", self.start)
    }
}

impl<T: std::fmt::Display> Describe for std::ops::Range<T> {
    fn describe(&self) -> String {
        format!("in [{}, {})", self.start, self.end)
    }
}

impl<T: std::fmt::Display> Describe for std::ops::RangeInclusive<T> {
    fn describe(&self) -> String {
        format!("in [{}, {}]", self.start(), self.end())
    }
}

impl Describe for std::ops::RangeFull {
    fn describe(&self) -> String {
        "finite".to_owned()
    }
}

/// Numbers greater than zero (`(0, inf)`), which `RangeFrom` cannot say for floats.
#[derive(Clone, Copy, Debug)]
pub struct Positive;

impl RangeBounds<f64> for Positive {
    fn start_bound(&self) -> std::ops::Bound<&f64> {
        std::ops::Bound::Excluded(&0.0)
    }
    fn end_bound(&self) -> std::ops::Bound<&f64> {
        std::ops::Bound::Unbounded
    }
}

impl Describe for Positive {
    fn describe(&self) -> String {
        "> 0".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, Value> {
        let gamma = BTreeMap::from([("gamma".to_owned(), Value::Float(-1.0))]);
        BTreeMap::from([
            ("batch".to_owned(), Value::Int(0)),
            ("ema".to_owned(), Value::Float(0.5)),
            ("name".to_owned(), Value::Int(3)),
            ("weighting".to_owned(), Value::Ctor { name: "min_snr".into(), args: gamma }),
        ])
    }

    #[test]
    fn collects_every_error_with_its_path() {
        let params = params();
        let none = |_: &str| Shape::UNKNOWN;
        let mut r = Reader::new(&params, &none, None);
        assert_eq!(r.int("batch", 1..), None);
        assert_eq!(r.float("ema", 0.0..1.0), Some(0.5));
        assert_eq!(r.str("name"), None);
        let w = r.ctor("weighting").unwrap();
        assert_eq!(r.arg_float(w, "gamma", Positive), None);
        assert_eq!(r.bool("flip"), None);
        let errors = r.finish(Some(())).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(paths, ["batch", "name", "weighting.gamma", "flip"]);
        assert_eq!(errors[0].message, "must be >= 1, got 0");
        assert_eq!(errors[2].message, "must be > 0, got -1");
        assert_eq!(errors[2].top(), "weighting");
    }

    #[test]
    fn rejects_non_finite_numbers() {
        let params = BTreeMap::from([("x".to_owned(), Value::Float(f64::NAN))]);
        let none = |_: &str| Shape::UNKNOWN;
        let mut r = Reader::new(&params, &none, None);
        assert_eq!(r.float("x", ..), None);
        assert_eq!(r.finish(Some(())).unwrap_err()[0].message, "must be finite, got NaN");
    }
}
