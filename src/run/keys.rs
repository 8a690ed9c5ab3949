//! Computing a stage instance's cache key from its resolved parameters, the
//! keys and output hashes of its inputs, its seed and (for torch stages) the
//! device kind and libtorch version.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use crate::cache::{self, CacheError, CacheKey, HashMemo, InputKey, TorchEnv};
use crate::lang::{Stage, Value};
use crate::stages::Kind;

use super::device;

/// Key inputs shared by every stage of a run: the file-hash memo.
pub struct Keyer {
    memo: Mutex<HashMemo>,
}

impl Keyer {
    /// Wraps a loaded memo.
    #[must_use]
    pub fn new(memo: HashMemo) -> Self {
        Self { memo: Mutex::new(memo) }
    }

    /// The memo back (to save it).
    ///
    /// # Panics
    /// If a thread panicked while hashing.
    #[must_use]
    pub fn into_memo(self) -> HashMemo {
        self.memo.into_inner().expect("hash memo lock")
    }

    /// The cache key of `stage`, given its inputs' keys and output hashes by stage name
    /// (recorded in the key by parameter path, so renaming an upstream stage keeps the key).
    ///
    /// # Errors
    /// A path parameter that cannot be read, or an unusable `device`.
    ///
    /// # Panics
    /// If another thread panicked while hashing.
    pub fn key(&self, stage: &Stage, info: &Kind, inputs: &BTreeMap<String, InputKey>) -> Result<CacheKey, String> {
        let mut hash_path =
            |p: &Path| -> Result<String, CacheError> { self.memo.lock().expect("hash memo lock").hash_path(p) };
        let output = |name: &str| inputs.get(name).map(|i| i.output.clone());
        let params = keyed_params(stage);
        let params = cache::canonical_params(&params, &mut hash_path, &output).map_err(|e| e.to_string())?;
        let inputs = cache::input_keys(&stage.params, &|name| inputs.get(name).cloned()).map_err(|e| e.to_string())?;
        Ok(CacheKey {
            kind: stage.kind.clone(),
            version: info.version,
            params,
            inputs,
            seed: seed(stage),
            torch: if info.torch() { Some(torch_env(stage)?) } else { None },
        })
    }
}

/// The parameters that determine the stage's output: all but its kind's execution-only ones
/// ([`crate::stages::kinds::EXECUTION_ONLY`], such as `train`'s `loader`), and those added
/// after stages were keyed, at the default that does what the kind did before
/// ([`UNKEYED_DEFAULTS`]), so earlier runs keep their keys (and lockfiles).
#[must_use]
pub fn keyed_params(stage: &Stage) -> BTreeMap<String, Value> {
    let at_old_default = |name: &str, v: &Value| {
        UNKEYED_DEFAULTS.iter().any(|&(kind, param, default)| kind == stage.kind && param == name && default.matches(v))
    };
    let keyed =
        |name: &String, v: &Value| !crate::stages::kinds::execution_only(&stage.kind, name) && !at_old_default(name, v);
    stage.params.iter().filter(|(name, v)| keyed(name, v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A parameter's value that leaves it out of the key.
#[derive(Clone, Copy, Debug)]
enum OldDefault {
    Int(i64),
    Ctor(&'static str),
}

impl OldDefault {
    fn matches(self, v: &Value) -> bool {
        match (self, v) {
            (Self::Int(d), _) => v.as_int() == Some(d),
            (Self::Ctor(d), Value::Ctor { name, .. }) => name == d,
            _ => false,
        }
    }
}

/// (kind, parameter, value) left out of keys: parameters added later, at the value that does
/// what the kind did before them. `train`'s `devices = 1`: other counts are keyed, their
/// results equal the one-device run's within float tolerance only (each rank's loss and the
/// all-reduce sum in another order than one process does), not bitwise, and a key promises
/// outputs `msnr verify` can reproduce bit for bit. `sample`'s `precision = fp32`.
const UNKEYED_DEFAULTS: [(&str, &str, OldDefault); 2] =
    [("train", "devices", OldDefault::Int(1)), ("sample", "precision", OldDefault::Ctor("fp32"))];

/// The stage's `seed` parameter, when its kind has one.
#[must_use]
pub fn seed(stage: &Stage) -> Option<u64> {
    stage.params.get("seed").and_then(Value::as_int).and_then(|s| u64::try_from(s).ok())
}

/// The device a torch stage resolves to, with the libtorch version.
///
/// # Errors
/// `device = cuda` without a GPU.
pub fn torch_env(stage: &Stage) -> Result<TorchEnv, String> {
    let requested = match stage.params.get("device") {
        Some(Value::Ctor { name, .. }) => name.as_str(),
        Some(Value::Str(s)) => s.as_str(),
        _ => "auto",
    };
    let device = device::resolve(requested).map_err(|e| format!("parameter `device`: {e}"))?;
    Ok(TorchEnv { device: device.to_string(), libtorch: device::LIBTORCH_VERSION.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_key(loader: &str, batch: u32) -> CacheKey {
        let text = format!(
            "stage digits = mnist {{ count = 100 }}\n\
             stage model = train {{ data = digits, net = unet {{}}, steps = 5, batch = {batch}{loader} }}\n"
        );
        let pipeline = crate::lang::load_str("p.msnr", &text, &[]).unwrap();
        let stage = pipeline.stages.iter().find(|s| s.name == "model").unwrap();
        let inputs = BTreeMap::from([("digits".to_string(), InputKey { output: "ab".repeat(32) })]);
        let keyer = Keyer::new(HashMemo::load("/nonexistent/msnr-memo.json").unwrap());
        keyer.key(stage, crate::stages::kinds::kind("train").unwrap(), &inputs).unwrap()
    }

    #[test]
    fn the_loader_leaves_the_key_alone_and_other_parameters_do_not() {
        let auto = train_key("", 8);
        assert!(!auto.params.contains_key("loader"), "{:?}", auto.params.keys());
        assert_eq!(train_key(", loader = stream { prefetch = 2 }", 8), auto);
        assert_eq!(train_key(", loader = resident", 8).digest(), auto.digest());
        assert_ne!(train_key("", 16).digest(), auto.digest(), "batch is keyed");
    }

    #[test]
    fn sample_keys_hold_precision_only_when_not_fp32() {
        let key = |extra: &str| {
            let text = format!(
                "stage digits = mnist {{ count = 100 }}\n\
                 stage model = train {{ data = digits, net = unet {{}}, steps = 5 }}\n\
                 stage s = sample {{ model = model, count = 4{extra} }}\n"
            );
            let pipeline = crate::lang::load_str("p.msnr", &text, &[]).unwrap();
            let stage = pipeline.stages.iter().find(|s| s.name == "s").unwrap();
            let inputs = BTreeMap::from([("model".to_string(), InputKey { output: "cd".repeat(32) })]);
            let keyer = Keyer::new(HashMemo::load("/nonexistent/msnr-memo.json").unwrap());
            keyer.key(stage, crate::stages::kinds::kind("sample").unwrap(), &inputs).unwrap()
        };
        let plain = key("");
        assert!(!plain.params.contains_key("precision"), "samples keyed before the parameter keep their keys");
        assert_eq!(key(", precision = fp32"), plain);
        let auto = key(", precision = auto");
        assert!(auto.params.contains_key("precision") && auto.digest() != plain.digest());
    }

    #[test]
    fn train_keys_hold_devices_only_when_not_one() {
        let one = train_key("", 8);
        assert!(!one.params.contains_key("devices"), "one device keeps its old key");
        assert_eq!(train_key(", devices = 1", 8), one);
        let two = train_key(", devices = 2", 8);
        assert!(two.params.contains_key("devices") && two.digest() != one.digest());
    }
}
