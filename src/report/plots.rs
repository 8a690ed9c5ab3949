//! `msnr plot`'s charts, from what [`gather`](super::gather) found:
//! - per group of `train` instances (a sweep, or one stage), the loss per logged step,
//!   raw (faint) and smoothed (an EMA), one colour per instance;
//! - per group, the unweighted MSE per timestep bucket at the end of training, one line
//!   per instance (the view of the Min-SNR paper's figure 1: how each noise level fares);
//! - per instance, each bucket's MSE over training;
//! - per group of `fid` instances and metric, the metric against the upstream `train`'s
//!   step count, one line per series (instances that differ only in their step count);
//! - each `sample` instance's `grid.png`, copied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::chart::{LineChart, Series, Style};
use super::gather::{Gathered, MetricPoint, TrainRun};
use super::log;

/// Smoothing of the loss curve: the EMA's decay per logged record.
pub const EMA_DECAY: f64 = 0.9;

/// Records averaged for the end-of-training MSE per timestep bucket.
pub const LAST_RECORDS: usize = 5;

/// What a plot shows, for the report's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Loss curves.
    Loss,
    /// MSE per timestep bucket.
    Timesteps,
    /// A metric against training steps.
    Metric,
    /// A sample grid.
    Samples,
}

/// One written plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// What it shows.
    pub topic: Topic,
    /// Its title.
    pub title: String,
    /// The PNG.
    pub png: PathBuf,
    /// The SVG (none for sample grids).
    pub svg: Option<PathBuf>,
}

/// Draws every chart into `dir` (created if needed) and copies the sample grids there.
///
/// # Errors
/// When `dir` or a file in it cannot be written.
pub fn write(g: &Gathered, dir: &Path) -> Result<Vec<Plot>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names = Names::default();
    let mut out = Vec::new();
    let mut charts: Vec<(Topic, String, LineChart)> = Vec::new();
    let trains = whole_runs(&g.trains);
    for group in groups(trains.iter().map(|t| t.group.as_str())) {
        let runs: Vec<&TrainRun> = trains.iter().copied().filter(|t| t.group == group).collect();
        charts.push((Topic::Loss, format!("loss-{group}"), loss_chart(&group, &runs)));
        charts.push((Topic::Timesteps, format!("mse-by-t-{group}"), buckets_chart(&group, &runs)));
    }
    for run in &trains {
        charts.push((Topic::Timesteps, format!("mse-over-steps-{}", run.stage), buckets_over_steps(run)));
    }
    for group in groups(g.points.iter().map(|p| p.group.as_str())) {
        let points: Vec<&MetricPoint> = g.points.iter().filter(|p| p.group == group).collect();
        for metric in metric_names(&points) {
            charts.push((Topic::Metric, format!("{metric}-{group}"), metric_chart(&group, &metric, &points)));
        }
    }
    for (topic, name, chart) in charts {
        if chart.ranges().is_none() {
            continue;
        }
        let stem = names.unique(&name);
        chart.save(dir, &stem)?;
        let png = dir.join(format!("{stem}.png"));
        out.push(Plot { topic, title: chart.title, png, svg: Some(dir.join(format!("{stem}.svg"))) });
    }
    for grid in &g.grids {
        let png = dir.join(format!("{}.png", names.unique(&format!("samples-{}", grid.stage))));
        std::fs::copy(&grid.path, &png).map_err(|e| format!("{} -> {}: {e}", grid.path.display(), png.display()))?;
        out.push(Plot { topic: Topic::Samples, title: format!("samples of {}", grid.stage), png, svg: None });
    }
    Ok(out)
}

/// The runs whose log is not the beginning of a longer run's log in the same group: a
/// `train` that continued a shorter run of its configuration (a sweep over `steps`) copied
/// that run's records, so the longer run's curve shows both.
fn whole_runs(runs: &[TrainRun]) -> Vec<&TrainRun> {
    let prefix_of = |a: &TrainRun, b: &TrainRun| {
        a.group == b.group && a.records.len() < b.records.len() && b.records.starts_with(&a.records)
    };
    runs.iter().filter(|a| !runs.iter().any(|b| prefix_of(a, b))).collect()
}

/// Distinct group names in first-seen order.
fn groups<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The metrics worth a chart: all but the sample counts `fid` records beside its scores
/// (`n`, `n_reference`), which do not change with training.
fn metric_names(points: &[&MetricPoint]) -> BTreeSet<String> {
    points.iter().flat_map(|p| p.metrics.keys()).filter(|m| *m != "n" && !m.starts_with("n_")).cloned().collect()
}

/// Raw loss (faint) and its EMA (solid, in the legend) per instance.
#[must_use]
pub fn loss_chart(group: &str, runs: &[&TrainRun]) -> LineChart {
    let mut series = Vec::new();
    for (color, run) in runs.iter().enumerate() {
        let steps: Vec<f64> = run.records.iter().map(|r| steps_f64(r.step)).collect();
        let loss: Vec<f64> = run.records.iter().map(|r| r.loss).collect();
        let smooth = log::ema(&loss, EMA_DECAY);
        series.push(Series { label: None, color, style: Style::Faint, points: zip(&steps, &loss) });
        series.push(Series { label: Some(run.label.clone()), color, style: Style::Line, points: zip(&steps, &smooth) });
    }
    let log_y = series.iter().flat_map(|s| &s.points).all(|p| p.1 > 0.0 || !p.1.is_finite());
    LineChart {
        title: format!("{group}: training loss (faint: per record; solid: EMA {EMA_DECAY})"),
        x_label: "step".into(),
        y_label: "weighted loss".into(),
        log_y,
        series,
    }
}

/// The unweighted MSE per timestep bucket, averaged over each instance's last records.
#[must_use]
pub fn buckets_chart(group: &str, runs: &[&TrainRun]) -> LineChart {
    let series = runs
        .iter()
        .enumerate()
        .map(|(color, run)| {
            let tail = &run.records[run.records.len().saturating_sub(LAST_RECORDS)..];
            let n = tail.iter().map(|r| r.mse_by_t.len()).max().unwrap_or(0);
            let points = (0..n)
                .filter_map(|b| {
                    mean(tail.iter().filter_map(|r| r.mse_by_t.get(b).copied().flatten())).map(|m| (center(b, n), m))
                })
                .collect();
            Series { label: Some(run.label.clone()), color, style: Style::Marked, points }
        })
        .collect();
    LineChart {
        title: format!("{group}: MSE per timestep at the end of training (mean of the last {LAST_RECORDS} records)"),
        x_label: "t / T (bucket centre; 0 = clean, 1 = pure noise)".into(),
        y_label: "unweighted MSE of the target".into(),
        log_y: true,
        series,
    }
}

/// One instance's MSE per timestep bucket over training, one line per bucket.
#[must_use]
pub fn buckets_over_steps(run: &TrainRun) -> LineChart {
    let n = run.records.iter().map(|r| r.mse_by_t.len()).max().unwrap_or(0);
    let series = (0..n)
        .map(|b| Series {
            label: Some(format!("t/T {:.1} to {:.1}", bucket_edge(b, n), bucket_edge(b + 1, n))),
            color: b,
            style: Style::Line,
            points: run
                .records
                .iter()
                .filter_map(|r| r.mse_by_t.get(b).copied().flatten().map(|m| (steps_f64(r.step), m)))
                .collect(),
        })
        .collect();
    LineChart {
        title: format!("{}: MSE per timestep bucket over training", run.stage),
        x_label: "step".into(),
        y_label: "unweighted MSE of the target".into(),
        log_y: true,
        series,
    }
}

/// One metric against the upstream train's steps, one line per series.
#[must_use]
pub fn metric_chart(group: &str, metric: &str, points: &[&MetricPoint]) -> LineChart {
    let series = groups(points.iter().map(|p| p.series.as_str()))
        .into_iter()
        .enumerate()
        .map(|(color, name)| {
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.series == name)
                .filter_map(|p| p.metrics.get(metric).map(|&v| (steps_f64(p.steps), v)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { label: Some(name), color, style: Style::Marked, points: pts }
        })
        .collect();
    LineChart {
        title: format!("{group}: {metric} against training steps"),
        x_label: "training steps of the upstream train".into(),
        y_label: metric.into(),
        log_y: false,
        series,
    }
}

#[allow(clippy::cast_precision_loss)]
fn steps_f64(step: u64) -> f64 {
    step as f64
}

#[allow(clippy::cast_precision_loss)]
fn bucket_edge(b: usize, n: usize) -> f64 {
    b as f64 / n.max(1) as f64
}

fn center(b: usize, n: usize) -> f64 {
    f64::midpoint(bucket_edge(b, n), bucket_edge(b + 1, n))
}

#[allow(clippy::cast_precision_loss)]
fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.filter(|v| v.is_finite()).fold((0.0, 0_usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

fn zip(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter().copied().zip(y.iter().copied()).collect()
}

/// File names from stage names: ASCII letters, digits, `-`, `_`, `=` and `.` kept, runs of
/// anything else become one `_`; a name already taken gets `-2`, `-3`, ...
#[derive(Default)]
struct Names(BTreeSet<String>);

impl Names {
    fn unique(&mut self, name: &str) -> String {
        let base = slug(name);
        let mut candidate = base.clone();
        let mut n = 1;
        while !self.0.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        candidate
    }
}

/// A file-name-safe form of a stage name.
#[must_use]
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.') {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches(|c| c == '_' || c == '.');
    if trimmed.is_empty() {
        "plot".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::log::Record;
    use std::collections::BTreeMap;

    fn record(step: u64, loss: f64, mse: &[Option<f64>]) -> Record {
        Record { step, loss, lr: 1e-4, mse_by_t: mse.to_vec() }
    }

    fn run(stage: &str, label: &str, records: Vec<Record>) -> TrainRun {
        TrainRun { stage: stage.into(), group: "m".into(), label: label.into(), records }
    }

    fn point(stage: &str, series: &str, steps: u64, fid: f64) -> MetricPoint {
        MetricPoint {
            stage: stage.into(),
            group: "score".into(),
            series: series.into(),
            steps,
            metrics: BTreeMap::from([("classifier_distance".to_string(), fid)]),
        }
    }

    #[test]
    fn loss_chart_has_raw_and_smoothed_lines_per_instance_with_one_legend_entry() {
        let a = run("m[w=constant]", "w=constant", vec![record(10, 1.0, &[]), record(20, 0.5, &[])]);
        let b = run("m[w=min_snr]", "w=min_snr", vec![record(10, 2.0, &[])]);
        let c = loss_chart("m", &[&a, &b]);
        assert_eq!(c.series.len(), 4);
        assert_eq!(c.series[0].points, vec![(10.0, 1.0), (20.0, 0.5)]);
        assert_eq!(c.series[1].label.as_deref(), Some("w=constant"));
        assert!(c.series[1].points[1].1 < 1.0 && c.series[1].points[1].1 > 0.5, "smoothed lies between");
        assert_eq!(c.series.iter().filter(|s| s.label.is_some()).count(), 2);
        assert!(c.log_y);
    }

    #[test]
    fn buckets_chart_averages_the_last_records_and_skips_empty_buckets() {
        let mut records: Vec<Record> = (1..=10).map(|i| record(i * 10, 1.0, &[Some(100.0), None])).collect();
        records.extend((11..=15).map(|i| record(i * 10, 1.0, &[Some(f64::from(u32::try_from(i).unwrap())), None])));
        let c = buckets_chart("m", &[&run("m", "m", records)]);
        assert_eq!(c.series[0].points, vec![(0.25, 13.0)], "mean of 11..=15 at the first bucket's centre");
        let over = buckets_over_steps(&run("m", "m", vec![record(10, 1.0, &[Some(0.5), Some(2.0)])]));
        assert_eq!(over.series.len(), 2);
        assert_eq!(over.series[1].points, vec![(10.0, 2.0)]);
        assert_eq!(over.series[1].label.as_deref(), Some("t/T 0.5 to 1.0"));
    }

    #[test]
    fn a_run_continued_by_a_longer_one_is_drawn_only_as_part_of_it() {
        let short = run("m[s=1]", "s=1", vec![record(10, 1.0, &[])]);
        let long = run("m[s=2]", "s=2", vec![record(10, 1.0, &[]), record(20, 0.5, &[])]);
        let other = run("m[w=x]", "w=x", vec![record(10, 2.0, &[])]);
        let runs = [short, long, other];
        let kept: Vec<&str> = whole_runs(&runs).iter().map(|r| r.stage.as_str()).collect();
        assert_eq!(kept, ["m[s=2]", "m[w=x]"]);
    }

    #[test]
    fn metric_chart_sorts_each_series_by_steps() {
        let points = [point("s[a]", "w=c", 400, 5.0), point("s[b]", "w=c", 200, 9.0), point("s[c]", "w=m", 200, 8.0)];
        let refs: Vec<&MetricPoint> = points.iter().collect();
        let c = metric_chart("score", "classifier_distance", &refs);
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].points, vec![(200.0, 9.0), (400.0, 5.0)]);
        assert_eq!(c.series[1].label.as_deref(), Some("w=m"));
    }

    #[test]
    fn slugs_are_file_safe_and_unique() {
        assert_eq!(slug("m[w=min_snr { gamma = 5 }]"), "m_w=min_snr_gamma_=_5");
        assert_eq!(slug("../x"), "x");
        assert_eq!(slug("[]"), "plot");
        let mut names = Names::default();
        assert_eq!(names.unique("a b"), "a_b");
        assert_eq!(names.unique("a/b"), "a_b-2");
    }

    #[test]
    fn write_draws_every_chart_and_copies_grids() {
        let dir = tempfile::tempdir().unwrap();
        let grid = dir.path().join("grid.png");
        image::RgbImage::new(4, 4).save(&grid).unwrap();
        let g = Gathered {
            trains: vec![run(
                "m",
                "m",
                vec![record(10, 1.0, &[Some(1.0), Some(0.1)]), record(20, 0.5, &[Some(0.5), None])],
            )],
            points: vec![point("score", "score", 20, 3.0)],
            grids: vec![super::super::gather::Grid { stage: "images".into(), path: grid }],
            notes: vec![],
        };
        let out = dir.path().join("plots");
        let plots = write(&g, &out).unwrap();
        let names: Vec<String> =
            plots.iter().map(|p| p.png.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                "loss-m.png",
                "mse-by-t-m.png",
                "mse-over-steps-m.png",
                "classifier_distance-score.png",
                "samples-images.png"
            ]
        );
        for p in &plots {
            assert!(image::open(&p.png).unwrap().width() > 0, "{}", p.png.display());
            if let Some(svg) = &p.svg {
                assert!(std::fs::read_to_string(svg).unwrap().starts_with("<svg"));
            }
        }
    }
}
