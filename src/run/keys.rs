//! Computing a stage instance's cache key from its resolved parameters, the
//! keys and output hashes of its inputs, its seed and (for torch stages) the
//! device kind and libtorch version.

use std::borrow::Cow;
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
        let params =
            cache::canonical_params(&keyed_params(stage), &mut hash_path, &output).map_err(|e| e.to_string())?;
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

/// The stage's `seed` parameter, when its kind has one.
#[must_use]
/// `stage`'s parameters as its key holds them: all, except `train`'s `devices` at its default
/// 1, so one-device runs keep the keys (and lockfiles) they had before data-parallel training.
/// Other counts are keyed: their results equal the one-device run's within float tolerance
/// only (each rank's loss and the all-reduce sum in another order than one process does), not
/// bitwise, and a key promises outputs `msnr verify` can reproduce bit for bit.
fn keyed_params(stage: &Stage) -> Cow<'_, BTreeMap<String, Value>> {
    if stage.kind == "train" && stage.params.get("devices").and_then(Value::as_int) == Some(1) {
        let mut params = stage.params.clone();
        params.remove("devices");
        return Cow::Owned(params);
    }
    Cow::Borrowed(&stage.params)
}

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
    use crate::lang::{SourceId, Span};

    fn stage(kind: &str, devices: i64) -> Stage {
        let span = Span { source: SourceId(0), start: 0, end: 0 };
        let params = BTreeMap::from([("devices".to_string(), Value::Int(devices)), ("steps".into(), Value::Int(5))]);
        Stage {
            name: "model".into(),
            kind: kind.into(),
            params,
            refs: Vec::new(),
            span,
            param_spans: BTreeMap::new(),
            sweep: None,
        }
    }

    #[test]
    fn train_keys_hold_devices_only_when_not_one() {
        assert!(!keyed_params(&stage("train", 1)).contains_key("devices"), "one device keeps its old key");
        assert_eq!(keyed_params(&stage("train", 2)).get("devices"), Some(&Value::Int(2)));
        assert_eq!(keyed_params(&stage("other", 1)).len(), 2, "other kinds keep every parameter");
    }
}
