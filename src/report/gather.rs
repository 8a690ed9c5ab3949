//! What the plots and the report show, gathered from a pipeline that has run:
//! each `train` instance's log, each `fid` instance's metrics with the step count
//! of the `train` upstream of it, and each `sample` instance's `grid.png`. Only
//! what the lockfile records and the store still holds is shown; the rest is
//! listed in [`Gathered::notes`] so a user knows why a plot is missing.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use crate::cache::{Lockfile, Store};
use crate::graph::Dag;
use crate::lang::{Pipeline, Stage, Value};

use super::log::{self, Record};

/// One `train` instance's log.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRun {
    /// The instance name (`m[w=constant]`).
    pub stage: String,
    /// The sweep's stage name as written, or the stage name when not swept: one chart per group.
    pub group: String,
    /// The legend entry: the sweep bindings (`w=constant`), or the stage name.
    pub label: String,
    /// The records of its `log.jsonl`.
    pub records: Vec<Record>,
}

/// One `fid` instance's metrics at the step count of its upstream `train`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The instance name.
    pub stage: String,
    /// One chart per group and metric (the sweep's stage name, or the stage name).
    pub group: String,
    /// The series it belongs to: its bindings without the ones that set the step count.
    pub series: String,
    /// The upstream `train`'s `steps`.
    pub steps: u64,
    /// The recorded metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// A `sample` instance's grid of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// The instance name.
    pub stage: String,
    /// Its `grid.png` in the store.
    pub path: PathBuf,
}

/// Everything drawable, plus what could not be found and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// Train logs in declaration order.
    pub trains: Vec<TrainRun>,
    /// Metric points in declaration order.
    pub points: Vec<MetricPoint>,
    /// Sample grids in declaration order.
    pub grids: Vec<Grid>,
    /// Stages left out, with the reason (`model: never run`).
    pub notes: Vec<String>,
}

/// Reads the logs, metrics and grids of `pipeline`'s stages from the lockfile and store.
///
/// # Errors
/// When a log in the store cannot be read or parsed.
pub fn gather(pipeline: &Pipeline, dag: &Dag, lock: &Lockfile, store: &Store) -> Result<Gathered, String> {
    let mut out = Gathered::default();
    for stage in &pipeline.stages {
        match stage.kind.as_str() {
            "train" => match output(stage, lock, store) {
                Ok(dir) if dir.join("log.jsonl").is_file() => out.trains.push(TrainRun {
                    stage: stage.name.clone(),
                    group: group(stage),
                    label: label(stage),
                    records: log::read(&dir.join("log.jsonl"))?,
                }),
                Ok(_) => out.notes.push(format!("{}: no log.jsonl in its output", stage.name)),
                Err(why) => out.notes.push(format!("{}: {why}", stage.name)),
            },
            "sample" => match output(stage, lock, store) {
                Ok(dir) if dir.join("grid.png").is_file() => {
                    out.grids.push(Grid { stage: stage.name.clone(), path: dir.join("grid.png") });
                }
                Ok(_) => out.notes.push(format!("{}: no grid.png in its output", stage.name)),
                Err(why) => out.notes.push(format!("{}: {why}", stage.name)),
            },
            "fid" => metric_point(pipeline, dag, lock, stage, &mut out),
            _ => {}
        }
    }
    name_series(&mut out.points, pipeline);
    Ok(out)
}

/// The store folder of a stage's recorded output, or why there is none.
fn output(stage: &Stage, lock: &Lockfile, store: &Store) -> Result<PathBuf, &'static str> {
    let entry = lock.stages.get(&stage.name).ok_or("never run")?;
    store.get(&entry.key).map(|e| e.out_dir).ok_or("recorded in the lockfile but not in the store")
}

fn metric_point(pipeline: &Pipeline, dag: &Dag, lock: &Lockfile, stage: &Stage, out: &mut Gathered) {
    let Some(entry) = lock.stages.get(&stage.name).filter(|e| !e.metrics.is_empty()) else {
        out.notes.push(format!("{}: no metrics recorded", stage.name));
        return;
    };
    let Some(steps) = upstream_train(pipeline, dag, &stage.name).and_then(|t| steps_of(t)) else {
        out.notes.push(format!("{}: no train stage upstream with a step count", stage.name));
        return;
    };
    out.points.push(MetricPoint {
        stage: stage.name.clone(),
        group: group(stage),
        series: String::new(),
        steps,
        metrics: entry.metrics.clone(),
    });
}

/// The nearest `train` stage upstream of `name` (breadth first over its inputs).
#[must_use]
pub fn upstream_train<'p>(pipeline: &'p Pipeline, dag: &Dag, name: &str) -> Option<&'p Stage> {
    let mut todo: VecDeque<usize> = dag.inputs(name).into();
    let mut seen = vec![false; pipeline.stages.len()];
    while let Some(i) = todo.pop_front() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let stage = &pipeline.stages[i];
        if stage.kind == "train" {
            return Some(stage);
        }
        todo.extend(dag.inputs(&stage.name));
    }
    None
}

/// A `train` stage's `steps`.
#[must_use]
pub fn steps_of(train: &Stage) -> Option<u64> {
    match train.params.get("steps") {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// The chart a stage's curves go on: its sweep's stage name, or its own name.
#[must_use]
pub fn group(stage: &Stage) -> String {
    stage.sweep.as_ref().map_or_else(|| stage.name.clone(), |s| s.base.clone())
}

/// A stage's legend entry: its sweep bindings as its name writes them
/// (`w=min_snr{gamma=5},s=2`), or its name.
#[must_use]
pub fn label(stage: &Stage) -> String {
    let parts = name_bindings(&stage.name);
    if stage.sweep.is_none() || parts.is_empty() {
        return stage.name.clone();
    }
    join(parts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The `var=value` parts of an instance name's brackets, split at top-level commas:
/// `m[w=min_snr{gamma=5},s=2]` -> (`w`, `min_snr{gamma=5}`), (`s`, `2`).
#[must_use]
pub fn name_bindings(name: &str) -> Vec<(String, String)> {
    let Some(inner) = name.split_once('[').and_then(|(_, rest)| rest.strip_suffix(']')) else { return Vec::new() };
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in inner.char_indices().chain(std::iter::once((inner.len(), ','))) {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                let part = &inner[start..i];
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                parts.push((k.trim().to_string(), v.trim().to_string()));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts
}

fn join<'v>(pairs: impl Iterator<Item = (&'v str, &'v str)>) -> String {
    pairs.map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Names each point's series: its sweep bindings less those that only set the step count
/// (a variable whose value equals the upstream `train`'s `steps` at every point of its group),
/// so `score[s=200,w=constant]` and `score[s=400,w=constant]` form one line, `w=constant`.
fn name_series(points: &mut [MetricPoint], pipeline: &Pipeline) {
    let stage_of = |p: &MetricPoint| pipeline.stage(&p.stage).and_then(|s| s.sweep.as_ref());
    let groups: Vec<String> = points.iter().map(|p| p.group.clone()).collect();
    let mut series = Vec::with_capacity(points.len());
    for p in points.iter() {
        let Some(sweep) = stage_of(p) else {
            series.push(p.stage.clone());
            continue;
        };
        let steps_var = |var: &str| {
            points.iter().zip(&groups).filter(|(_, g)| **g == p.group).all(|(q, _)| {
                stage_of(q).and_then(|s| s.bindings.iter().find(|(k, _)| k == var)).is_some_and(|(_, v)| {
                    matches!(v, Value::Int(n) if u64::try_from(*n).ok() == Some(q.steps))
                })
            })
        };
        let written = name_bindings(&p.stage);
        let kept: Vec<(&str, &str)> = written
            .iter()
            .filter(|(k, _)| sweep.bindings.iter().any(|(var, _)| var == k) && !steps_var(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        series.push(if kept.is_empty() { p.group.clone() } else { join(kept.into_iter()) });
    }
    for (p, s) in points.iter_mut().zip(series) {
        p.series = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (tempfile::TempDir, Pipeline, Dag) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.msnr");
        std::fs::write(&path, text).unwrap();
        let pipeline = crate::lang::load(&path, &[]).unwrap();
        let dag = Dag::build(&pipeline).unwrap();
        (dir, pipeline, dag)
    }

    const SWEEP: &str = "stage d = mnist { count = 20 }\n\
        sweep w in [constant, min_snr { gamma = 5 }], s in [20, 40] {\n\
          stage m = train { data = d, net = unet {}, weighting = w, steps = s }\n\
          stage x = sample { model = m, count = 4 }\n\
          stage score = fid { samples = x, reference = d }\n\
        }\n";

    #[test]
    fn instance_names_split_into_their_written_bindings() {
        assert_eq!(
            name_bindings("m[w=min_snr{gamma=5},s=2,l=[1,2]]"),
            vec![("w".into(), "min_snr{gamma=5}".into()), ("s".into(), "2".into()), ("l".into(), "[1,2]".into())]
        );
        assert!(name_bindings("model").is_empty());
    }

    #[test]
    fn a_score_finds_its_train_through_the_sampler_and_the_steps_variable_leaves_the_series_name() {
        let (_dir, pipeline, dag) = load(SWEEP);
        let train = upstream_train(&pipeline, &dag, "score[w=constant,s=40]").unwrap();
        assert_eq!((train.name.as_str(), steps_of(train)), ("m[w=constant,s=40]", Some(40)));
        assert_eq!(label(train), "w=constant,s=40");
        assert_eq!(group(train), "m");
        let mut points: Vec<MetricPoint> = ["score[w=constant,s=20]", "score[w=min_snr{gamma=5},s=40]"]
            .iter()
            .map(|name| MetricPoint {
                stage: (*name).to_string(),
                group: "score".into(),
                series: String::new(),
                steps: steps_of(upstream_train(&pipeline, &dag, name).unwrap()).unwrap(),
                metrics: BTreeMap::new(),
            })
            .collect();
        name_series(&mut points, &pipeline);
        assert_eq!(points[0].series, "w=constant");
        assert_eq!(points[1].series, "w=min_snr{gamma=5}");
    }
}
