//! The experiment table: one [`Row`] per stage instance that recorded metrics in the
//! lockfile, with its sweep bindings, the training steps behind it (the nearest upstream
//! `train`), that training's wall time and device, and for scores the feature network they
//! were measured in. Rows whose trainings differ only in their length (a sweep over
//! `steps`, run as one continued training: `run::continuation`) form a [`Series`]: a metric
//! versus training steps curve.

use std::collections::{BTreeMap, BTreeSet};

use crate::cache::{short_hash, LockEntry, Lockfile, Store};
use crate::graph::Dag;
use crate::lang::Pipeline;
use crate::run::continuation;

/// One stage instance with recorded metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Index into the pipeline's stages.
    pub stage: usize,
    /// Instance name (`score[target=x0,steps=800]`).
    pub name: String,
    /// The name as written, before the sweep expanded it (`score`).
    pub base: String,
    /// Stage kind.
    pub kind: String,
    /// Sweep bindings, rendered as in instance names (`weighting` -> `min_snr{gamma=5}`).
    pub bindings: Vec<(String, String)>,
    /// The recorded metrics.
    pub metrics: BTreeMap<String, f64>,
    /// The nearest upstream (or own) `train` instance, by index.
    pub train: Option<usize>,
    /// Its training steps.
    pub steps: Option<u64>,
    /// The wall time of that training in seconds, continued runs counting the runs they
    /// continued, when the store recorded it.
    pub train_seconds: Option<f64>,
    /// Where it trained (`cpu`, `cuda`).
    pub device: Option<String>,
    /// For scores: the feature network (`inception:<hash>`, `classifier:<hash>`).
    pub features: Option<String>,
}

/// Rows of one stage declaration that differ only in their training length, by steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The stage as written (`score`).
    pub base: String,
    /// The bindings every point shares (the length binding left out).
    pub label: Vec<(String, String)>,
    /// Row indices, by increasing steps.
    pub points: Vec<usize>,
}

impl Series {
    /// The label as one string: `target=x0, weighting=constant` (the base name if none).
    #[must_use]
    pub fn title(&self) -> String {
        if self.label.is_empty() {
            return self.base.clone();
        }
        self.label.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }

    /// `(steps, value)` of `metric` along the series, where both are known.
    #[must_use]
    pub fn curve(&self, exp: &Experiment, metric: &str) -> Vec<(u64, f64)> {
        self.points.iter().filter_map(|&r| Some((exp.rows[r].steps?, *exp.rows[r].metrics.get(metric)?))).collect()
    }
}

/// Every row and series of a pipeline's recorded results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Experiment {
    /// Rows in pipeline order.
    pub rows: Vec<Row>,
    /// The sweep bindings that only change a training's length (`steps`).
    pub length_bindings: BTreeSet<String>,
    /// Series, in order of their first row.
    pub series: Vec<Series>,
}

impl Experiment {
    /// Reads the lockfile's results (and, where a store is given, the wall times it kept).
    #[must_use]
    pub fn new(pipeline: &Pipeline, dag: &Dag, lock: &Lockfile, store: Option<&Store>) -> Self {
        let before = continuation::order(pipeline);
        let length_bindings = length_bindings(pipeline, &before);
        let seconds = |name: &str| {
            let entry = lock.stages.get(name)?;
            store?.get(&entry.key)?.meta.seconds
        };
        let mut rows = Vec::new();
        for (i, stage) in pipeline.stages.iter().enumerate() {
            let Some(entry) = lock.stages.get(&stage.name).filter(|e| !e.metrics.is_empty()) else { continue };
            let train = nearest_train(pipeline, dag, i);
            let train_entry = train.and_then(|t| lock.stages.get(&pipeline.stages[t].name));
            rows.push(Row {
                stage: i,
                name: stage.name.clone(),
                base: stage.sweep.as_ref().map_or_else(|| stage.name.clone(), |s| s.base.clone()),
                kind: stage.kind.clone(),
                bindings: bindings(stage),
                metrics: entry.metrics.clone(),
                train,
                steps: train_entry.and_then(|e| e.metrics.get("steps")).and_then(|&s| as_steps(s)),
                train_seconds: train.and_then(|t| chain_seconds(pipeline, &before, t, &seconds)),
                device: train_entry.and_then(|e| e.key_fields.torch.as_ref()).map(|t| t.device.clone()),
                features: features(entry),
            });
        }
        let series = group(&rows, &length_bindings);
        Self { rows, length_bindings, series }
    }

    /// The sweep bindings that differ between the rows of `base` (the columns worth showing).
    #[must_use]
    pub fn varying(&self, base: &str) -> Vec<String> {
        let rows: Vec<&Row> = self.rows.iter().filter(|r| r.base == base).collect();
        let mut names: Vec<String> = Vec::new();
        for row in &rows {
            for (k, _) in &row.bindings {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        names.retain(|k| {
            let values: BTreeSet<Option<&String>> = rows.iter().map(|r| binding(r, k)).collect();
            values.len() > 1
        });
        names
    }
}

/// The value of binding `name` in `row`.
#[must_use]
pub fn binding<'a>(row: &'a Row, name: &str) -> Option<&'a String> {
    row.bindings.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Whether a smaller value of `metric` is better (distances, losses); accuracies are not.
#[must_use]
pub fn lower_is_better(metric: &str) -> bool {
    !metric.contains("accuracy")
}

/// A swept instance's bindings as its name renders them (`m[w=min_snr{gamma=5},n=4]`), so
/// tables and instance names agree.
fn bindings(stage: &crate::lang::Stage) -> Vec<(String, String)> {
    let Some(sweep) = &stage.sweep else { return Vec::new() };
    let inner = stage.name.strip_prefix(sweep.base.as_str()).and_then(|r| r.strip_prefix('[')?.strip_suffix(']'));
    let Some(inner) = inner else {
        return sweep.bindings.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    };
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.iter().filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn as_steps(value: f64) -> Option<u64> {
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

/// The stage itself if it trains, else the nearest `train` upstream (breadth first).
fn nearest_train(pipeline: &Pipeline, dag: &Dag, i: usize) -> Option<usize> {
    let mut frontier = vec![i];
    let mut seen = BTreeSet::new();
    while !frontier.is_empty() {
        if let Some(&t) = frontier.iter().find(|&&j| pipeline.stages[j].kind == "train") {
            return Some(t);
        }
        frontier =
            frontier.iter().flat_map(|&j| dag.inputs(&pipeline.stages[j].name)).filter(|j| seen.insert(*j)).collect();
    }
    None
}

/// The wall time of training `t`, adding that of the shorter runs it continued.
fn chain_seconds(
    pipeline: &Pipeline,
    before: &[Option<usize>],
    t: usize,
    seconds: &dyn Fn(&str) -> Option<f64>,
) -> Option<f64> {
    let own = seconds(&pipeline.stages[t].name)?;
    Some(own + before[t].and_then(|p| chain_seconds(pipeline, before, p, seconds)).unwrap_or(0.0))
}

/// The feature network of a score: the classifier or Inception input's output hash.
fn features(entry: &LockEntry) -> Option<String> {
    ["classifier", "inception", "detector"].iter().find_map(|input| {
        let key = entry.key_fields.inputs.get(*input)?;
        Some(format!("{input}:{}", short_hash(&key.output)))
    })
}

/// The bindings whose values differ between trainings that continue one another.
fn length_bindings(pipeline: &Pipeline, before: &[Option<usize>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, prev) in before.iter().enumerate() {
        let Some(j) = *prev else { continue };
        let (a, b) = (bindings(&pipeline.stages[i]), bindings(&pipeline.stages[j]));
        out.extend(a.iter().filter(|pair| !b.contains(pair)).map(|(k, _)| k.clone()));
    }
    out
}

/// Groups rows by stage as written and bindings other than the length bindings.
fn group(rows: &[Row], length: &BTreeSet<String>) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let label: Vec<(String, String)> = row.bindings.iter().filter(|(k, _)| !length.contains(k)).cloned().collect();
        match series.iter_mut().find(|s| s.base == row.base && s.label == label) {
            Some(s) => s.points.push(r),
            None => series.push(Series { base: row.base.clone(), label, points: vec![r] }),
        }
    }
    for s in &mut series {
        s.points.sort_by_key(|&r| rows[r].steps);
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> (Pipeline, Dag) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.msnr");
        std::fs::write(&path, text).unwrap();
        let pipeline = crate::lang::load(&path, &[]).unwrap();
        let dag = Dag::build(&pipeline).unwrap();
        (pipeline, dag)
    }

    const SWEEP: &str = "stage d = mnist {}\n\
        sweep w in [constant, min_snr { gamma = 5 }], n in [2, 4] {\n\
          stage m = train { data = d, net = unet {}, weighting = w, steps = n }\n\
          stage s = sample { model = m, count = 10 }\n\
        }\n";

    fn lock_with(pipeline: &Pipeline, metrics: &dyn Fn(&str) -> Vec<(&'static str, f64)>) -> Lockfile {
        let mut lock = Lockfile::default();
        for stage in &pipeline.stages {
            let json = serde_json::json!({
                "kind": stage.kind, "key": "0".repeat(64), "output": "1".repeat(64), "seed": null,
                "key_fields": { "kind": stage.kind, "version": 1, "params": {}, "inputs": {}, "seed": null,
                                "torch": { "device": "cpu", "libtorch": "2.11.0" } },
                "versions": { "msnr": "0", "kind": 1, "libtorch": null },
                "metrics": metrics(&stage.name).into_iter().collect::<BTreeMap<_, _>>(), "pins": {},
            });
            lock.stages.insert(stage.name.clone(), serde_json::from_value(json).unwrap());
        }
        lock
    }

    #[test]
    fn rows_of_a_length_sweep_form_one_series_per_other_binding() {
        let (p, dag) = pipeline(SWEEP);
        let lock = lock_with(&p, &|name| {
            let steps = if name.contains("n=4") { 4.0 } else { 2.0 };
            if name.starts_with("m[") {
                vec![("steps", steps), ("loss", 0.5)]
            } else if name.starts_with("s[") {
                vec![("images", 10.0)]
            } else {
                vec![]
            }
        });
        let exp = Experiment::new(&p, &dag, &lock, None);
        assert_eq!(exp.length_bindings, BTreeSet::from(["n".to_string()]));
        assert_eq!(exp.rows.len(), 8);
        let samples: Vec<&Series> = exp.series.iter().filter(|s| s.base == "s").collect();
        assert_eq!(samples.len(), 2, "{:?}", exp.series);
        assert_eq!(samples[1].title(), "w=min_snr{gamma=5}");
        let steps: Vec<Option<u64>> = samples[1].points.iter().map(|&r| exp.rows[r].steps).collect();
        assert_eq!(steps, [Some(2), Some(4)], "ordered by steps, read from the upstream train");
        assert_eq!(exp.rows[samples[1].points[0]].device.as_deref(), Some("cpu"));
        assert_eq!(exp.varying("s"), ["w", "n"]);
        assert!(lower_is_better("classifier_distance") && !lower_is_better("class_accuracy"));
    }
}
