//! Continuing a shorter run. A `train` whose key equals a stored entry's in everything
//! but a larger `steps` starts from that entry's final state (kept beside its output,
//! `store/<key>/state/`) instead of from scratch. Every random draw of step `k` derives
//! from (seed, k) and the learning-rate schedule depends only on the step, so on CPU the
//! result is bit for bit the one a run from scratch gives (a test checks it), while each
//! length stays its own cache entry: a sweep over `steps` gives a metric-versus-steps
//! curve that caches per point, and lengthening training re-uses every earlier step.
//!
//! Two parts: [`find`] picks the longest stored run of the same configuration when a stage
//! is about to run, and [`order`] makes the runner run the instances of one pipeline that
//! differ only in that parameter shortest first, so each continues the previous one.

use std::path::Path;

use crate::cache::{CacheKey, KeyValue, Store};
use crate::lang::{Pipeline, Stage, Value};
use crate::stages::spec::Continuation;

/// The kinds that can continue a shorter run, with the parameter that measures progress.
pub const CONTINUABLE: &[(&str, &str)] = &[("train", "steps")];

/// The progress parameter of `kind`, if it can continue a shorter run.
#[must_use]
pub fn progress_param(kind: &str) -> Option<&'static str> {
    CONTINUABLE.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// The longest stored run that `key` can continue: same kind, version, inputs, seed,
/// device and parameters except a smaller progress parameter, with its final state kept.
/// `name_at` names the pipeline's instance with that progress, where there is one.
#[must_use]
pub fn find(store: &Store, key: &CacheKey, name_at: &dyn Fn(u64) -> Option<String>) -> Option<Continuation> {
    let param = progress_param(&key.kind)?;
    let target = progress(key, param)?;
    let mut best: Option<Continuation> = None;
    for digest in store.keys().ok()? {
        let Some(entry) = store.get(&digest) else { continue };
        let other = &entry.meta.key_fields;
        let Some(step) = progress(other, param) else { continue };
        let better = best.as_ref().is_none_or(|b| step > b.step);
        if step < target && better && same_but(key, other, param) && has_state(&entry.state_dir()) {
            let name = name_at(step).unwrap_or_else(|| format!("{} (entry {})", key.kind, &digest[..12]));
            best = Some(Continuation { name, step, state_dir: entry.state_dir(), out_dir: entry.out_dir.clone() });
        }
    }
    best
}

/// The progress parameter's value in `key`.
fn progress(key: &CacheKey, param: &str) -> Option<u64> {
    match key.params.get(param) {
        Some(KeyValue::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Whether two keys are equal except for `param`.
fn same_but(a: &CacheKey, b: &CacheKey, param: &str) -> bool {
    let strip = |k: &CacheKey| {
        let mut k = k.clone();
        k.params.remove(param);
        k
    };
    a.kind == b.kind && strip(a) == strip(b)
}

/// Whether a state folder holds a final checkpoint (`ckpt/state.json`).
fn has_state(dir: &Path) -> bool {
    dir.join("ckpt").join("state.json").is_file()
}

/// For each stage, the stage of the same pipeline it should wait for: the instance with the
/// same kind and parameters but the next smaller progress parameter (none for other kinds).
/// The runner starts a stage only after that one ended (whatever its outcome), so the
/// longer run can continue it.
#[must_use]
pub fn order(pipeline: &Pipeline) -> Vec<Option<usize>> {
    pipeline
        .stages
        .iter()
        .map(|stage| siblings(pipeline, stage).filter(|&(p, _)| p < progress_of(stage)).max().map(|(_, j)| j))
        .collect()
}

/// The pipeline's instance with the same kind and parameters as `stage` but progress `step`.
#[must_use]
pub fn sibling(pipeline: &Pipeline, stage: &Stage, step: u64) -> Option<usize> {
    siblings(pipeline, stage).find(|&(p, _)| u64::try_from(p).ok() == Some(step)).map(|(_, j)| j)
}

/// The progress parameter's value of `stage` (`i64::MIN` for kinds without one).
fn progress_of(stage: &Stage) -> i64 {
    progress_param(&stage.kind).and_then(|p| stage.params.get(p)).and_then(Value::as_int).unwrap_or(i64::MIN)
}

/// Every other instance with the same kind and parameters as `stage` except the progress
/// parameter, with that parameter's value and its index.
fn siblings<'a>(pipeline: &'a Pipeline, stage: &'a Stage) -> impl Iterator<Item = (i64, usize)> + 'a {
    let param = progress_param(&stage.kind);
    pipeline.stages.iter().enumerate().filter_map(move |(j, other)| {
        let param = param?;
        let theirs = other.params.get(param).and_then(Value::as_int)?;
        let same = same_params_but(&super::keys::keyed_params(stage), &super::keys::keyed_params(other), param);
        (other.name != stage.name && other.kind == stage.kind && same).then_some((theirs, j))
    })
}

fn same_params_but(
    a: &std::collections::BTreeMap<String, Value>,
    b: &std::collections::BTreeMap<String, Value>,
    param: &str,
) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| k == param || b.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cache::InputKey;

    fn key(steps: i64, lr: f64) -> CacheKey {
        let mut params = BTreeMap::new();
        params.insert("steps".to_string(), KeyValue::Int(steps));
        params.insert("lr".to_string(), KeyValue::Float(lr));
        let mut inputs = BTreeMap::new();
        inputs.insert("data".to_string(), InputKey { output: "ab".repeat(32) });
        CacheKey { kind: "train".into(), version: 3, params, inputs, seed: Some(0), torch: None }
    }

    fn store_with(dir: &Path, keys: &[(CacheKey, bool)]) -> Store {
        let store = Store::open(dir).unwrap();
        for (k, with_state) in keys {
            let staging = store.begin(k).unwrap();
            std::fs::write(staging.out_dir().join("model"), b"w").unwrap();
            if *with_state {
                std::fs::create_dir_all(staging.state_dir().join("ckpt")).unwrap();
                std::fs::write(staging.state_dir().join("ckpt/state.json"), b"{\"step\":1}").unwrap();
            }
            staging.commit(BTreeMap::new(), BTreeMap::new()).unwrap();
        }
        store
    }

    #[test]
    fn finds_the_longest_shorter_run_of_the_same_configuration_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(
            dir.path(),
            &[(key(100, 1e-3), true), (key(200, 1e-3), true), (key(300, 1e-3), false), (key(250, 2e-3), true)],
        );
        let names = |_: u64| None;
        let found = find(&store, &key(400, 1e-3), &names).unwrap();
        assert_eq!(found.step, 200, "300 kept no state; 250 has another lr");
        assert!(found.state_dir.join("ckpt/state.json").is_file());
        assert!(found.out_dir.join("model").is_file());
        assert_eq!(find(&store, &key(150, 1e-3), &names).unwrap().step, 100);
        assert_eq!(find(&store, &key(100, 1e-3), &names), None, "never itself or a longer run");
        assert_eq!(find(&store, &key(400, 5e-3), &names), None);
        let mut other_kind = key(400, 1e-3);
        other_kind.kind = "classifier".into();
        assert_eq!(find(&store, &other_kind, &names), None, "only kinds that can continue");
    }

    #[test]
    fn instances_that_differ_in_steps_and_the_loader_continue_each_other() {
        let text = "stage digits = mnist { count = 10 }\n\
                    stage a = train { data = digits, net = unet {}, steps = 5 }\n\
                    stage b = train { data = digits, net = unet {}, steps = 9, loader = stream {} }\n\
                    stage c = train { data = digits, net = unet {}, steps = 9, batch = 4 }\n";
        let pipeline = crate::lang::load_str("p.msnr", text, &[]).unwrap();
        assert_eq!(order(&pipeline), [None, None, Some(1), None], "b waits for a; c has another batch");
    }
}
