//! `msnr compare`: the recorded metrics across a sweep's instances, one table per stage
//! declaration (the bindings that differ, training steps, metrics, training time, device),
//! and with `--reach` the steps each metric-versus-steps series needs to get as good as a
//! value or as a baseline's final value. Terminal table, CSV, JSON or Markdown.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use clap::ValueEnum;
use serde_json::json;

use super::inspect::table;
use super::Failure;
use crate::report::table::{binding, Row};
use crate::report::{reach, Experiment, Goal, Reached};
use crate::run::project::Project;

/// How `compare` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    #[default]
    Table,
    /// Comma-separated values, one row per stage instance.
    Csv,
    /// One JSON document: rows, and what `--reach` found.
    Json,
    /// GitHub-flavoured Markdown tables.
    Markdown,
}

/// What `compare` was asked.
pub struct Options<'a> {
    /// `METRIC=VALUE` or `METRIC=baseline`.
    pub reach: Option<&'a str>,
    /// `NAME=VALUE`: the baseline series' binding.
    pub baseline: Option<&'a str>,
    /// The output format.
    pub format: Format,
    /// Show metrics measured on different n or feature networks side by side anyway.
    pub mixed: bool,
}

/// `msnr compare`.
pub(super) fn compare(file: &Path, set: &[(String, String)], opts: &Options<'_>) -> Result<(), Failure> {
    let project = Project::open(file, set)?;
    let store = project.store().ok();
    let exp = Experiment::new(&project.pipeline, &project.dag, &project.lockfile, store.as_ref());
    if exp.rows.is_empty() {
        crate::console::out_line(&format!("no metrics recorded yet: run `msnr run {}` first", file.display()));
        return Ok(());
    }
    let groups = groups(&exp);
    if !opts.mixed {
        for rows in &groups {
            comparable(rows)?;
        }
    }
    let reached = match opts.reach {
        Some(spec) => Some(parse_goal(spec, opts.baseline, &exp)?),
        None => None,
    };
    let reached = reached.map(|(metric, goal)| {
        let found = reach(&exp, &metric, &goal);
        (metric, goal, found)
    });
    let text = match opts.format {
        Format::Json => render_json(&exp, reached.as_ref()),
        Format::Csv => render_csv(&exp, reached.as_ref()),
        Format::Table | Format::Markdown => render_tables(&exp, &groups, reached.as_ref(), opts.format),
    };
    crate::console::out(&text);
    Ok(())
}

/// Rows by stage as written, in pipeline order.
fn groups(exp: &Experiment) -> Vec<Vec<&Row>> {
    let mut out: Vec<Vec<&Row>> = Vec::new();
    for row in &exp.rows {
        match out.iter_mut().find(|g| g[0].base == row.base) {
            Some(g) => g.push(row),
            None => out.push(vec![row]),
        }
    }
    out
}

/// Refuses rows of one declaration whose scores were measured on different numbers of
/// images or in different feature networks: their numbers are not comparable.
fn comparable(rows: &[&Row]) -> Result<(), Failure> {
    let distinct =
        |f: &dyn Fn(&Row) -> Option<String>| -> BTreeSet<String> { rows.iter().filter_map(|r| f(r)).collect() };
    let n = distinct(&|r| r.metrics.get("n").map(|n| format!("{n}")));
    let features = distinct(&|r| r.features.clone());
    let what = if n.len() > 1 {
        Some(("numbers of images n", n))
    } else if features.len() > 1 {
        Some(("feature networks", features))
    } else {
        None
    };
    match what {
        Some((what, values)) => Err(Failure::Message(format!(
            "the metrics of `{}` were measured with different {what} ({}): they are not comparable; \
             pass --mixed to show them side by side anyway",
            rows[0].base,
            values.into_iter().collect::<Vec<_>>().join(", ")
        ))),
        None => Ok(()),
    }
}

/// Reads `--reach METRIC=VALUE|baseline` and `--baseline NAME=VALUE` (default
/// `weighting=constant` where the pipeline sweeps `weighting` over `constant`).
fn parse_goal(spec: &str, baseline: Option<&str>, exp: &Experiment) -> Result<(String, Goal), Failure> {
    let bad = |why: String| Failure::Message(format!("--reach {spec}: {why}"));
    let (metric, value) = spec.split_once('=').ok_or_else(|| bad("expected METRIC=VALUE or METRIC=baseline".into()))?;
    let metric = metric.trim().to_string();
    let known: BTreeSet<&String> = exp.rows.iter().flat_map(|r| r.metrics.keys()).collect();
    if !known.contains(&metric) {
        let names: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        return Err(bad(format!("no stage recorded a metric `{metric}`; recorded: {}", names.join(", "))));
    }
    if value.trim() != "baseline" {
        let v: f64 = value.trim().parse().map_err(|_| bad(format!("`{value}` is not a number (or `baseline`)")))?;
        return Ok((metric, Goal::Value(v)));
    }
    let (name, value) = match baseline {
        Some(b) => b.split_once('=').ok_or_else(|| bad(format!("--baseline {b}: expected NAME=VALUE")))?,
        None if exp.rows.iter().any(|r| binding(r, "weighting").is_some_and(|v| v == "constant")) => {
            ("weighting", "constant")
        }
        None => return Err(bad("name the baseline series with --baseline NAME=VALUE (a sweep binding)".into())),
    };
    if !exp.rows.iter().any(|r| r.bindings.iter().any(|(k, _)| k == name.trim())) {
        return Err(bad(format!("no swept stage has a binding `{}`", name.trim())));
    }
    Ok((metric, Goal::Baseline(name.trim().to_string(), value.trim().to_string())))
}

/// A metric as people read it: integers plainly, else 4 significant digits.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let digits = 3.0 - v.abs().log10().floor().clamp(-12.0, 3.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let digits = digits as usize;
    format!("{v:.digits$}")
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) => format!("{:.1}min", s / 60.0),
    }
}

/// The columns of one group: the bindings that vary, steps, every metric, time, device.
fn columns(exp: &Experiment, rows: &[&Row]) -> (Vec<String>, Vec<String>) {
    let varying = exp.varying(&rows[0].base);
    let metrics: BTreeSet<String> =
        rows.iter().flat_map(|r| r.metrics.keys()).filter(|m| *m != "steps").cloned().collect();
    (varying, metrics.into_iter().collect())
}

fn render_tables(
    exp: &Experiment,
    groups: &[Vec<&Row>],
    reached: Option<&(String, Goal, Vec<Reached>)>,
    format: Format,
) -> String {
    let mut out = String::new();
    for rows in groups {
        let (varying, metrics) = columns(exp, rows);
        let mut header: Vec<String> = if varying.is_empty() { vec!["STAGE".into()] } else { varying.clone() };
        let with_steps = rows.iter().any(|r| r.steps.is_some());
        if with_steps {
            header.push("STEPS".into());
        }
        header.extend(metrics.iter().cloned());
        let (timed, placed) = (rows.iter().any(|r| r.train_seconds.is_some()), rows.iter().any(|r| r.device.is_some()));
        if timed {
            header.push("TRAIN TIME".into());
        }
        if placed {
            header.push("DEVICE".into());
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut cells: Vec<String> = if varying.is_empty() {
                    vec![r.name.clone()]
                } else {
                    varying.iter().map(|k| binding(r, k).cloned().unwrap_or_else(|| "-".into())).collect()
                };
                if with_steps {
                    cells.push(r.steps.map_or_else(|| "-".into(), |s| s.to_string()));
                }
                cells.extend(metrics.iter().map(|m| r.metrics.get(m).map_or_else(|| "-".into(), |&v| number(v))));
                if timed {
                    cells.push(seconds(r.train_seconds));
                }
                if placed {
                    cells.push(r.device.clone().unwrap_or_else(|| "-".into()));
                }
                cells
            })
            .collect();
        let _ = writeln!(out, "{} ({})", rows[0].base, rows[0].kind);
        out.push_str(&grid(&header, &body, format));
        out.push('\n');
    }
    if let Some((metric, goal, found)) = reached {
        out.push_str(&reach_text(exp, metric, goal, found, format));
    }
    out
}

fn grid(header: &[String], body: &[Vec<String>], format: Format) -> String {
    if format == Format::Markdown {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(header);
        out.push_str(&line(&vec!["---".to_string(); header.len()]));
        for row in body {
            out.push_str(&line(row));
        }
        return out;
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&header, body)
}

fn reach_text(exp: &Experiment, metric: &str, goal: &Goal, found: &[Reached], format: Format) -> String {
    let better = if crate::report::table::lower_is_better(metric) { "<=" } else { ">=" };
    let mut out = match goal {
        Goal::Value(v) => format!("steps to reach {metric} {better} {}\n", number(*v)),
        Goal::Baseline(k, v) => {
            format!("steps to reach the final {metric} of {k}={v} (the same run otherwise), and how many times fewer\n")
        }
    };
    if found.is_empty() {
        out.push_str(
            "  no series to compare (a sweep over the training length, with values of the metric, is needed)\n",
        );
        return out;
    }
    let header: Vec<String> =
        ["SERIES", "TARGET", "BASELINE STEPS", "STEPS", "FEWER STEPS"].iter().map(ToString::to_string).collect();
    let body: Vec<Vec<String>> = found
        .iter()
        .map(|r| {
            let steps = match r.steps {
                None => "not reached".to_string(),
                Some((s, true)) => format!("{s:.0}"),
                Some((s, false)) => format!("<= {s:.0}"),
            };
            let ratio = match (r.ratio(), r.steps) {
                (Some(x), Some((_, true))) => format!("{x:.2}x"),
                (Some(x), Some((_, false))) => format!(">= {x:.2}x"),
                _ => "-".into(),
            };
            let base = r.baseline.map_or_else(|| "-".into(), |(_, s)| s.to_string());
            vec![exp.series[r.series].title(), number(r.target), base, steps, ratio]
        })
        .collect();
    out.push_str(&grid(&header, &body, format));
    out.push_str("(steps interpolated linearly between the evaluated points around the crossing)\n");
    out
}

fn row_json(r: &Row) -> serde_json::Value {
    json!({
        "stage": r.name, "kind": r.kind,
        "bindings": r.bindings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "steps": r.steps, "metrics": r.metrics, "train_seconds": r.train_seconds,
        "device": r.device, "features": r.features,
    })
}

fn render_json(exp: &Experiment, reached: Option<&(String, Goal, Vec<Reached>)>) -> String {
    let rows: Vec<serde_json::Value> = exp.rows.iter().map(row_json).collect();
    let mut doc = json!({ "rows": rows });
    if let Some((metric, _, found)) = reached {
        let items: Vec<serde_json::Value> = found
            .iter()
            .map(|r| {
                json!({
                    "series": exp.series[r.series].title(), "metric": metric, "target": r.target,
                    "baseline_steps": r.baseline.map(|(_, s)| s),
                    "steps": r.steps.map(|(s, _)| s), "exact": r.steps.map(|(_, e)| e), "fewer_steps": r.ratio(),
                })
            })
            .collect();
        doc["reach"] = json!(items);
    }
    format!("{}\n", serde_json::to_string_pretty(&doc).expect("json serializes"))
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn render_csv(exp: &Experiment, reached: Option<&(String, Goal, Vec<Reached>)>) -> String {
    let mut names: Vec<String> = Vec::new();
    for r in &exp.rows {
        for (k, _) in &r.bindings {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let metrics: BTreeSet<&String> = exp.rows.iter().flat_map(|r| r.metrics.keys()).collect();
    let mut header = vec!["stage".to_string(), "kind".to_string()];
    header.extend(names.iter().cloned());
    header.push("train_steps".into());
    header.extend(metrics.iter().map(|m| (*m).clone()));
    header.extend(["train_seconds".to_string(), "device".to_string()]);
    let mut out = header.iter().map(|h| csv_cell(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in &exp.rows {
        let mut cells = vec![r.name.clone(), r.kind.clone()];
        cells.extend(names.iter().map(|k| binding(r, k).cloned().unwrap_or_default()));
        cells.push(r.steps.map(|s| s.to_string()).unwrap_or_default());
        cells.extend(metrics.iter().map(|m| r.metrics.get(*m).map(ToString::to_string).unwrap_or_default()));
        cells.push(r.train_seconds.map(|s| format!("{s:.3}")).unwrap_or_default());
        cells.push(r.device.clone().unwrap_or_default());
        out.push_str(&(cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",") + "\n"));
    }
    if let Some((metric, _, found)) = reached {
        out.push_str("\nseries,metric,target,baseline_steps,steps,exact,fewer_steps\n");
        for r in found {
            let cells = [
                exp.series[r.series].title(),
                metric.clone(),
                r.target.to_string(),
                r.baseline.map(|(_, s)| s.to_string()).unwrap_or_default(),
                r.steps.map(|(s, _)| format!("{s:.1}")).unwrap_or_default(),
                r.steps.map(|(_, e)| e.to_string()).unwrap_or_default(),
                r.ratio().map(|x| format!("{x:.4}")).unwrap_or_default(),
            ];
            out.push_str(&(cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",") + "\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(1600.0), "1600");
        assert_eq!(number(1.666_003_491), "1.666");
        assert_eq!(number(0.042_886), "0.04289");
        assert_eq!(number(-0.056_392), "-0.05639");
        assert_eq!(number(14.2), "14.20");
        assert_eq!(csv_cell("min_snr { gamma = 5 }"), "min_snr { gamma = 5 }");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }

    fn score(n: f64, features: &str) -> Row {
        Row {
            stage: 0,
            name: "score".into(),
            base: "score".into(),
            kind: "fid".into(),
            bindings: vec![],
            metrics: [("n".to_string(), n), ("classifier_distance".to_string(), 1.0)].into_iter().collect(),
            train: None,
            steps: None,
            train_seconds: None,
            device: None,
            features: Some(features.into()),
        }
    }

    #[test]
    fn scores_of_different_n_or_feature_networks_are_refused_by_name() {
        let (a, b, c) = (score(500.0, "classifier:aa"), score(1000.0, "classifier:aa"), score(500.0, "inception:bb"));
        assert!(comparable(&[&a, &a]).is_ok());
        let Err(Failure::Message(m)) = comparable(&[&a, &b]) else { panic!("mixed n must be refused") };
        assert!(m.contains("numbers of images n (1000, 500)") && m.contains("--mixed"), "{m}");
        let Err(Failure::Message(m)) = comparable(&[&a, &c]) else { panic!("mixed features must be refused") };
        assert!(m.contains("feature networks (classifier:aa, inception:bb)"), "{m}");
    }
}
