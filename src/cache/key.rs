//! The cache key: one plain struct holding everything that determines a
//! stage's output (DESIGN.md section 3), hashed with blake3 into the name of
//! its store entry. What is in a key is visible here and nowhere else:
//!
//! - the stage kind and its implementation version;
//! - every parameter in canonical form ([`KeyValue`]): a local path becomes the
//!   content hash of the file or folder, a stage reference the output hash of
//!   that stage, so moving a file or renaming a stage changes nothing;
//! - the key and output hash of each input, by the parameter that reads it;
//! - the seed, and for torch stages the device kind and libtorch version.
//!
//! File mtimes are never part of a key. [`CacheKey::diff`] lists what changed
//! between two keys so `plan` can say why a stage runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::CacheError;
use crate::lang::Value;

/// Everything that determines a stage's output. [`CacheKey::digest`] names its store entry.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct CacheKey {
    /// Stage kind (`train`).
    pub kind: String,
    /// Implementation version of the kind; bump it when the same inputs would give a different output.
    pub version: u32,
    /// Resolved parameters in canonical form (see [`canonical_params`]).
    pub params: BTreeMap<String, KeyValue>,
    /// Each input, by the parameter path that refers to it (`data`, `net.cond`, `images[1]`).
    pub inputs: BTreeMap<String, InputKey>,
    /// The seed, for stages whose output depends on one.
    pub seed: Option<u64>,
    /// For torch stages: what makes numerics differ between machines.
    pub torch: Option<TorchEnv>,
}

/// An upstream stage as seen by a downstream key: only the content hash of its output,
/// never its own key, so an upstream stage that re-runs and produces the same bytes (an
/// input image re-encoded with identical pixels, a changed parameter that does not change
/// the result) leaves everything downstream cached: early cutoff, as Bazel's and Nix's
/// content-addressed outputs do.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct InputKey {
    /// The tree hash of the upstream stage's output folder (hex).
    pub output: String,
}

/// The environment of a torch stage.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct TorchEnv {
    /// Device kind (`cpu`, `cuda`).
    pub device: String,
    /// libtorch version (`2.11.0`).
    pub libtorch: String,
}

/// A parameter value in canonical form: a [`Value`] with paths and stage
/// references replaced by content hashes.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    /// An integer.
    Int(i64),
    /// A float, kept bit-exact (non-finite values included).
    Float(#[serde(with = "super::exact_float")] f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// A local file or folder, by its content hash (hex).
    Content(String),
    /// An upstream stage, by its output hash (hex).
    Output(String),
    /// A list.
    List(Vec<KeyValue>),
    /// A constructor value such as `min_snr { gamma = 5.0 }`.
    Ctor {
        /// The constructor's name.
        name: String,
        /// Its arguments.
        args: BTreeMap<String, KeyValue>,
    },
    /// An optional parameter left unset.
    None,
}

/// One difference between two keys, phrased for `plan`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyChange {
    /// What changed: `param weighting.gamma`, `input data`, `version`, `seed`, `device`.
    pub what: String,
    /// The old value, as the user would write it.
    pub old: String,
    /// The new value.
    pub new: String,
}

impl fmt::Display for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.what, self.old, self.new)
    }
}

/// The first 12 hex digits of a hash, enough to tell hashes apart in messages.
#[must_use]
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

impl CacheKey {
    /// The hex blake3 digest of the key's canonical JSON form: the name of its store entry.
    ///
    /// Struct fields serialize in declaration order and maps are sorted
    /// (`BTreeMap`), so equal keys give equal digests on every machine.
    ///
    /// # Panics
    /// Never: the key has only string map keys, and writing into a hasher cannot fail.
    #[must_use]
    pub fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        serde_json::to_writer(&mut hasher, self).expect("a cache key always serializes");
        hasher.finalize().to_hex().to_string()
    }

    /// What changed from `self` (the recorded key) to `newer`, in a stable order.
    #[must_use]
    pub fn diff(&self, newer: &CacheKey) -> Vec<KeyChange> {
        let mut out = Vec::new();
        if self.kind != newer.kind {
            push(&mut out, "kind".into(), &self.kind, &newer.kind);
        }
        if self.version != newer.version {
            push(&mut out, "version".into(), &self.version, &newer.version);
        }
        diff_args("param ", &self.params, &newer.params, &mut out);
        diff_inputs(&self.inputs, &newer.inputs, &mut out);
        if self.seed != newer.seed {
            push(&mut out, "seed".into(), &OrNone(self.seed.as_ref()), &OrNone(newer.seed.as_ref()));
        }
        diff_torch(self.torch.as_ref(), newer.torch.as_ref(), &mut out);
        out
    }
}

/// Records one change.
fn push(out: &mut Vec<KeyChange>, what: String, old: &dyn fmt::Display, new: &dyn fmt::Display) {
    out.push(KeyChange { what, old: old.to_string(), new: new.to_string() });
}

/// Displays an optional value, `none` when absent.
struct OrNone<'a, T>(Option<&'a T>);

impl<T: fmt::Display> fmt::Display for OrNone<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Diffs two argument maps under `prefix` (`param ` or `param weighting.`).
fn diff_args(
    prefix: &str,
    old: &BTreeMap<String, KeyValue>,
    new: &BTreeMap<String, KeyValue>,
    out: &mut Vec<KeyChange>,
) {
    for name in union(old, new) {
        let what = format!("{prefix}{name}");
        match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) => diff_value(&what, a, b, out),
            (a, b) => push(out, what, &OrAbsent(a), &OrAbsent(b)),
        }
    }
}

/// Displays a map entry that may be missing.
struct OrAbsent<'a>(Option<&'a KeyValue>);

impl fmt::Display for OrAbsent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("(absent)"),
        }
    }
}

/// The sorted union of two maps' keys.
fn union<'a, V>(a: &'a BTreeMap<String, V>, b: &'a BTreeMap<String, V>) -> Vec<&'a String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
}

/// Diffs two values at parameter path `what`, recursing into constructors and equal-length lists.
/// Changed stage outputs are left to the `input` lines.
fn diff_value(what: &str, old: &KeyValue, new: &KeyValue, out: &mut Vec<KeyChange>) {
    match (old, new) {
        (KeyValue::Ctor { name: a, args: x }, KeyValue::Ctor { name: b, args: y }) if a == b => {
            diff_args(&format!("{what}."), x, y, out);
        }
        (KeyValue::List(x), KeyValue::List(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                diff_value(&format!("{what}[{i}]"), a, b, out);
            }
        }
        (KeyValue::Output(_), KeyValue::Output(_)) => {}
        (KeyValue::Float(a), KeyValue::Float(b)) if a.to_bits() == b.to_bits() => {}
        _ if old == new => {}
        _ => push(out, what.to_string(), old, new),
    }
}

/// Diffs the input maps: `input data: output 1a2b.. -> output 3c4d..` (keys when the outputs agree).
fn diff_inputs(old: &BTreeMap<String, InputKey>, new: &BTreeMap<String, InputKey>, out: &mut Vec<KeyChange>) {
    for name in union(old, new) {
        let (a, b) = (old.get(name), new.get(name));
        if a == b {
            continue;
        }
        let (a, b) = (OrNone(a).to_string(), OrNone(b).to_string());
        push(out, format!("input {name}"), &a, &b);
    }
}

/// Diffs the torch environments: `device` and `libtorch` lines.
fn diff_torch(old: Option<&TorchEnv>, new: Option<&TorchEnv>, out: &mut Vec<KeyChange>) {
    let device = |t: Option<&TorchEnv>| t.map_or("none".to_string(), |t| t.device.clone());
    let libtorch = |t: Option<&TorchEnv>| t.map_or("none".to_string(), |t| t.libtorch.clone());
    if device(old) != device(new) {
        push(out, "device".into(), &device(old), &device(new));
    }
    if libtorch(old) != libtorch(new) {
        push(out, "libtorch".into(), &libtorch(old), &libtorch(new));
    }
}

impl fmt::Display for InputKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output {}", short_hash(&self.output))
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Content(h) => write!(f, "content {}", short_hash(h)),
            Self::Output(h) => write!(f, "output {}", short_hash(h)),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    write!(f, "{}{v}", if i > 0 { ", " } else { "" })?;
                }
                f.write_str("]")
            }
            Self::Ctor { name, args } => {
                write!(f, "{name} {{")?;
                for (i, (k, v)) in args.iter().enumerate() {
                    write!(f, "{} {k} = {v}", if i > 0 { "," } else { "" })?;
                }
                f.write_str(" }")
            }
            Self::None => f.write_str("none"),
        }
    }
}

/// Resolves parameters to their canonical key form: each [`Value::Path`] is
/// replaced by `hash_path(path)` (use [`super::HashMemo::hash_path`]), each
/// [`Value::Stage`] by `stage_output(stage)`, the output hash of that stage.
///
/// # Errors
/// A failed `hash_path`, or [`CacheError::MissingInput`] when a referenced
/// stage has no known output.
pub fn canonical_params(
    params: &BTreeMap<String, Value>,
    hash_path: &mut dyn FnMut(&Path) -> Result<String, CacheError>,
    stage_output: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, KeyValue>, CacheError> {
    let mut resolve = |param: &str, v: &Value| -> Result<Option<KeyValue>, CacheError> {
        match v {
            Value::Path(p) => hash_path(p).map(|h| Some(KeyValue::Content(h))),
            Value::Stage(s) => stage_output(s)
                .map(|h| Some(KeyValue::Output(h)))
                .ok_or_else(|| CacheError::MissingInput { param: param.into(), stage: s.clone() }),
            _ => Ok(None),
        }
    };
    params.iter().map(|(name, v)| Ok((name.clone(), canonical(name, v, &mut resolve)?))).collect()
}

/// The inputs of a key: for each stage reference among `params`, by the
/// parameter path that holds it (`data`, `net.cond`, `images[1]`), the
/// upstream's key and output as given by `upstream(stage)`.
///
/// # Errors
/// [`CacheError::MissingInput`] when `upstream` knows nothing of a referenced stage.
pub fn input_keys(
    params: &BTreeMap<String, Value>,
    upstream: &dyn Fn(&str) -> Option<InputKey>,
) -> Result<BTreeMap<String, InputKey>, CacheError> {
    let mut out = BTreeMap::new();
    let mut visit = |param: &str, v: &Value| -> Result<Option<KeyValue>, CacheError> {
        if let Value::Stage(s) = v {
            let key = upstream(s).ok_or_else(|| CacheError::MissingInput { param: param.into(), stage: s.clone() })?;
            out.insert(param.to_string(), key);
        }
        Ok(None)
    };
    for (name, v) in params {
        canonical(name, v, &mut visit)?;
    }
    Ok(out)
}

/// A leaf resolver: given the parameter path and a value, `Some` replaces it.
type Resolver<'a> = dyn FnMut(&str, &Value) -> Result<Option<KeyValue>, CacheError> + 'a;

/// Converts one value at parameter path `param`, letting `resolve` replace leaves.
fn canonical(param: &str, v: &Value, resolve: &mut Resolver) -> Result<KeyValue, CacheError> {
    if let Some(kv) = resolve(param, v)? {
        return Ok(kv);
    }
    Ok(match v {
        Value::Int(i) => KeyValue::Int(*i),
        Value::Float(x) => KeyValue::Float(*x),
        Value::Bool(b) => KeyValue::Bool(*b),
        Value::Str(s) => KeyValue::Str(s.clone()),
        Value::List(items) => KeyValue::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| canonical(&format!("{param}[{i}]"), v, resolve))
                .collect::<Result<_, _>>()?,
        ),
        Value::Ctor { name, args } => KeyValue::Ctor {
            name: name.clone(),
            args: args
                .iter()
                .map(|(k, v)| Ok((k.clone(), canonical(&format!("{param}.{k}"), v, resolve)?)))
                .collect::<Result<_, CacheError>>()?,
        },
        // Paths and stages are resolved above; one a resolver declines is left out of the key.
        Value::None | Value::Path(_) | Value::Stage(_) => KeyValue::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn min_snr(gamma: f64) -> KeyValue {
        KeyValue::Ctor { name: "min_snr".into(), args: BTreeMap::from([("gamma".into(), KeyValue::Float(gamma))]) }
    }

    fn sample_key() -> CacheKey {
        CacheKey {
            kind: "train".into(),
            version: 1,
            params: BTreeMap::from([
                ("batch".into(), KeyValue::Int(128)),
                ("betas".into(), KeyValue::List(vec![KeyValue::Float(0.9), KeyValue::Float(0.999)])),
                ("data".into(), KeyValue::Output(h('a'))),
                ("lr".into(), KeyValue::Float(1e-4)),
                ("precision".into(), KeyValue::Str("bf16".into())),
                ("weighting".into(), min_snr(5.0)),
            ]),
            inputs: BTreeMap::from([("data".into(), InputKey { output: h('a') })]),
            seed: Some(0),
            torch: Some(TorchEnv { device: "cpu".into(), libtorch: "2.11.0".into() }),
        }
    }

    #[test]
    fn digest_is_pinned() {
        // Changing this literal means every user's cache is invalidated: do it on purpose only.
        // Recomputed independently by tests/fixtures/cache/reference_hashes.py (Python blake3).
        assert_eq!(sample_key().digest(), "3a1b5d5b9df0a5fb982b49c29a4216e6e323d477db49130a6a1044b305af4b8f");
    }

    #[test]
    fn canonical_json_is_sorted_and_exact() {
        let json = serde_json::to_string(&sample_key()).unwrap();
        assert!(json.starts_with(r#"{"kind":"train","version":1,"params":{"batch":{"int":128},"betas""#), "{json}");
        assert!(json.contains(r#""lr":{"float":0.0001}"#), "{json}");
    }

    #[test]
    fn digest_survives_a_json_round_trip() {
        let key = sample_key();
        let back: CacheKey = serde_json::from_str(&serde_json::to_string_pretty(&key).unwrap()).unwrap();
        assert_eq!(back.digest(), key.digest());
    }

    #[test]
    fn every_field_changes_the_digest() {
        let base = sample_key();
        let mut variants = vec![base.clone(); 6];
        variants[0].version = 2;
        variants[1].params.insert("weighting".into(), min_snr(5.000_000_000_000_001));
        variants[2].inputs.get_mut("data").unwrap().output = h('c');
        variants[3].seed = Some(1);
        variants[4].torch.as_mut().unwrap().device = "cuda".into();
        variants[5].params.insert("batch".into(), KeyValue::Float(128.0));
        let mut digests: Vec<String> = variants.iter().map(CacheKey::digest).collect();
        digests.push(base.digest());
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 7);
    }

    #[test]
    fn diff_names_the_nested_parameter() {
        let old = sample_key();
        let mut new = old.clone();
        new.params.insert("weighting".into(), min_snr(10.0));
        let changes: Vec<String> = old.diff(&new).iter().map(ToString::to_string).collect();
        assert_eq!(changes, ["param weighting.gamma: 5.0 -> 10.0"]);
    }

    #[test]
    fn diff_lists_every_kind_of_change() {
        let old = sample_key();
        let mut new = old.clone();
        new.version = 2;
        new.params.insert("betas".into(), KeyValue::List(vec![KeyValue::Float(0.99), KeyValue::Float(0.999)]));
        new.params.remove("precision");
        new.params.insert("ema".into(), KeyValue::Float(0.9999));
        new.params.insert("weighting".into(), KeyValue::Ctor { name: "constant".into(), args: BTreeMap::new() });
        new.params.insert("data".into(), KeyValue::Output(h('d')));
        new.inputs.insert("data".into(), InputKey { output: h('d') });
        new.seed = None;
        new.torch = Some(TorchEnv { device: "cuda".into(), libtorch: "2.11.0".into() });
        let changes: Vec<String> = old.diff(&new).iter().map(ToString::to_string).collect();
        assert_eq!(
            changes,
            [
                "version: 1 -> 2",
                "param betas[0]: 0.9 -> 0.99",
                "param ema: (absent) -> 0.9999",
                "param precision: \"bf16\" -> (absent)",
                "param weighting: min_snr { gamma = 5.0 } -> constant { }",
                "input data: output aaaaaaaaaaaa -> output dddddddddddd",
                "seed: 0 -> none",
                "device: cpu -> cuda",
            ]
        );
    }

    fn value_params() -> BTreeMap<String, Value> {
        let cond =
            Value::Ctor { name: "cond".into(), args: BTreeMap::from([("src".into(), Value::Stage("raw".into()))]) };
        BTreeMap::from([
            ("data".into(), Value::Stage("faces".into())),
            ("list".into(), Value::List(vec![Value::Int(1), Value::Path(PathBuf::from("/data/x.png"))])),
            ("net".into(), cond),
            ("opt".into(), Value::None),
        ])
    }

    #[test]
    fn canonical_params_replace_paths_and_stages_by_hashes() {
        let mut hashed = Vec::new();
        let mut hash_path = |p: &Path| {
            hashed.push(p.to_path_buf());
            Ok(h('1'))
        };
        let out = |s: &str| Some(if s == "faces" { h('2') } else { h('3') });
        let params = canonical_params(&value_params(), &mut hash_path, &out).unwrap();
        assert_eq!(hashed, [PathBuf::from("/data/x.png")]);
        assert_eq!(params["data"], KeyValue::Output(h('2')));
        assert_eq!(params["list"], KeyValue::List(vec![KeyValue::Int(1), KeyValue::Content(h('1'))]));
        assert_eq!(params["opt"], KeyValue::None);
        let KeyValue::Ctor { args, .. } = &params["net"] else { panic!("{params:?}") };
        assert_eq!(args["src"], KeyValue::Output(h('3')));
    }

    #[test]
    fn canonical_params_name_the_missing_input() {
        let err =
            canonical_params(&value_params(), &mut |_| Ok(h('1')), &|s| (s == "faces").then(|| h('2'))).unwrap_err();
        assert_eq!(err.to_string(), "parameter `net.src` refers to stage `raw`, whose output is not available yet");
    }

    #[test]
    fn input_keys_are_named_by_parameter_path() {
        let up = |s: &str| Some(InputKey { output: format!("out-{s}") });
        let inputs = input_keys(&value_params(), &up).unwrap();
        let names: Vec<&String> = inputs.keys().collect();
        assert_eq!(names, ["data", "net.src"]);
        assert_eq!(inputs["net.src"].output, "out-raw");
    }
}
