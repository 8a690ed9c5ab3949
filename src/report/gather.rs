//! What the plots and the report show, gathered from a pipeline that has run:
//! each `train` instance's log, each `fid` instance's metrics at the step count of
//! the `train` behind it (grouped into series by the experiment table,
//! [`Experiment`]), and each `sample` instance's `grid.png`. Only what the lockfile
//! records and the store still holds is shown; the rest is listed in
//! [`Gathered::notes`] so a user knows why a plot is missing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cache::{Lockfile, Store};
use crate::graph::Dag;
use crate::lang::{Pipeline, Stage};

use super::log::{self, Record};
use super::table::Experiment;

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
    /// The steps of the `train` behind it.
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
            _ => {}
        }
    }
    let exp = Experiment::new(pipeline, dag, lock, Some(store));
    out.points = metric_points(&exp);
    for row in exp.rows.iter().filter(|r| r.kind == "fid" && r.steps.is_none()) {
        out.notes.push(format!("{}: no train behind it with a recorded step count", row.name));
    }
    Ok(out)
}

/// The `fid` rows of each series of the experiment table, where their steps are known.
fn metric_points(exp: &Experiment) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for series in &exp.series {
        for &r in &series.points {
            let row = &exp.rows[r];
            let Some(steps) = row.steps.filter(|_| row.kind == "fid") else { continue };
            out.push(MetricPoint {
                stage: row.name.clone(),
                group: series.base.clone(),
                series: series.title(),
                steps,
                metrics: row.metrics.clone(),
            });
        }
    }
    out
}

/// The store folder of a stage's recorded output, or why there is none.
fn output(stage: &Stage, lock: &Lockfile, store: &Store) -> Result<PathBuf, &'static str> {
    let entry = lock.stages.get(&stage.name).ok_or("never run")?;
    store.get(&entry.key).map(|e| e.out_dir).ok_or("recorded in the lockfile but not in the store")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_split_into_their_written_bindings() {
        assert_eq!(
            name_bindings("m[w=min_snr{gamma=5},s=2,l=[1,2]]"),
            vec![("w".into(), "min_snr{gamma=5}".into()), ("s".into(), "2".into()), ("l".into(), "[1,2]".into())]
        );
        assert!(name_bindings("model").is_empty());
    }

    fn row(name: &str, kind: &str, steps: Option<u64>) -> crate::report::Row {
        crate::report::Row {
            stage: 0,
            name: name.into(),
            base: "score".into(),
            kind: kind.into(),
            bindings: vec![("w".into(), "constant".into())],
            metrics: BTreeMap::from([("kid".to_string(), 0.5)]),
            train: None,
            steps,
            train_seconds: None,
            device: None,
            features: None,
        }
    }

    #[test]
    fn metric_points_are_the_scores_of_each_series_with_known_steps() {
        let exp = Experiment {
            rows: vec![row("score[w=constant,s=2]", "fid", Some(2)), row("m", "train", Some(2)), row("x", "fid", None)],
            length_bindings: std::collections::BTreeSet::from(["s".to_string()]),
            series: vec![crate::report::Series {
                base: "score".into(),
                label: vec![("w".into(), "constant".into())],
                points: vec![0, 1, 2],
            }],
        };
        let points = metric_points(&exp);
        assert_eq!(points.len(), 1, "trains and scores without steps left out");
        assert_eq!((points[0].series.as_str(), points[0].steps, points[0].group.as_str()), ("w=constant", 2, "score"));
    }
}
