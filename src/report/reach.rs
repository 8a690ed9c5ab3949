//! Steps to reach a value: where a metric-versus-steps curve first gets at least as good
//! as a target, interpolated linearly between the two evaluated points around the
//! crossing (the paper's "iterations to FID 10" read from its curves). The target is a
//! given value or a baseline series' final value (e.g. constant weighting's), in which case
//! the ratio of steps says how much sooner a run gets there: the Min-SNR paper's speed-up.

use super::table::{lower_is_better, Experiment, Series};

/// What to reach.
#[derive(Clone, Debug, PartialEq)]
pub enum Goal {
    /// A fixed value of the metric (`--reach classifier_distance=10`).
    Value(f64),
    /// The final value of the series that matches this binding and otherwise has the same
    /// label (`--reach classifier_distance=baseline --baseline weighting=constant`).
    Baseline(String, String),
}

/// One series' answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    /// Index into [`Experiment::series`].
    pub series: usize,
    /// The value to reach.
    pub target: f64,
    /// The baseline series and its final steps, when the target is its final value.
    pub baseline: Option<(usize, u64)>,
    /// Where the curve gets there: `(steps, exact)`; `exact` is false when the first
    /// evaluated point already does (it may have got there earlier).
    pub steps: Option<(f64, bool)>,
}

impl Reached {
    /// Baseline steps over these steps: how many times fewer steps this series needs.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn ratio(&self) -> Option<f64> {
        let (_, base) = self.baseline?;
        let (steps, _) = self.steps?;
        (steps > 0.0).then(|| base as f64 / steps)
    }
}

/// For each series with values of `metric`, where it reaches `goal` (baseline series
/// themselves and series without a matching baseline are left out).
#[must_use]
pub fn reach(exp: &Experiment, metric: &str, goal: &Goal) -> Vec<Reached> {
    let lower = lower_is_better(metric);
    let mut out = Vec::new();
    for (i, s) in exp.series.iter().enumerate() {
        let curve = s.curve(exp, metric);
        if curve.is_empty() {
            continue;
        }
        let (target, baseline) = match goal {
            Goal::Value(v) => (*v, None),
            Goal::Baseline(name, value) => {
                if has(s, name, value) {
                    continue;
                }
                let Some(b) = baseline_of(exp, s, name, value) else { continue };
                let Some(&(steps, last)) = exp.series[b].curve(exp, metric).last() else { continue };
                (last, Some((b, steps)))
            }
        };
        out.push(Reached { series: i, target, baseline, steps: crossing(&curve, target, lower) });
    }
    out
}

fn has(s: &Series, name: &str, value: &str) -> bool {
    s.label.iter().any(|(k, v)| k == name && normalize(v) == normalize(value))
}

/// Spaces do not matter when matching a binding typed on the command line.
fn normalize(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The series of the same stage whose label equals `s`'s with `name` set to `value`.
fn baseline_of(exp: &Experiment, s: &Series, name: &str, value: &str) -> Option<usize> {
    let want: Vec<(String, String)> = s
        .label
        .iter()
        .map(|(k, v)| if k == name { (k.clone(), normalize(value)) } else { (k.clone(), normalize(v)) })
        .collect();
    exp.series.iter().position(|b| {
        b.base == s.base && b.label.iter().map(|(k, v)| (k.clone(), normalize(v))).collect::<Vec<_>>() == want
    })
}

/// The first steps at which `curve` (sorted by steps) is at least as good as `target`.
#[allow(clippy::cast_precision_loss)]
#[must_use]
pub fn crossing(curve: &[(u64, f64)], target: f64, lower: bool) -> Option<(f64, bool)> {
    let good = |v: f64| if lower { v <= target } else { v >= target };
    let first = curve.iter().position(|&(_, v)| good(v))?;
    let (s1, v1) = curve[first];
    if first == 0 {
        return Some((s1 as f64, false));
    }
    let (s0, v0) = curve[first - 1];
    let t = if (v1 - v0).abs() < f64::EPSILON { 1.0 } else { (target - v0) / (v1 - v0) };
    Some((s0 as f64 + t.clamp(0.0, 1.0) * (s1 as f64 - s0 as f64), true))
}

#[cfg(test)]
mod tests {
    use super::super::table::Row;
    use super::*;

    #[test]
    fn the_crossing_is_interpolated_between_the_points_around_it() {
        let curve = [(400, 15.0), (800, 6.7), (1600, 4.8), (2400, 3.6)];
        assert_eq!(crossing(&curve, 4.8, true), Some((1600.0, true)));
        let (steps, exact) = crossing(&curve, 5.75, true).unwrap();
        assert!(exact && (steps - 1200.0).abs() < 1e-9, "{steps}");
        assert_eq!(crossing(&curve, 20.0, true), Some((400.0, false)), "already there at the first point");
        assert_eq!(crossing(&curve, 1.0, true), None);
        assert_eq!(crossing(&[(1, 0.5), (2, 0.9)], 0.7, false).map(|(s, _)| s), Some(1.5), "higher is better");
    }

    fn row(stage: usize, w: &str, steps: u64, d: f64) -> Row {
        Row {
            stage,
            name: format!("score[w={w},n={steps}]"),
            base: "score".into(),
            kind: "fid".into(),
            bindings: vec![("w".into(), w.into()), ("n".into(), steps.to_string())],
            metrics: [("classifier_distance".to_string(), d)].into_iter().collect(),
            train: None,
            steps: Some(steps),
            train_seconds: None,
            device: None,
            features: None,
        }
    }

    #[test]
    fn a_baseline_goal_is_the_baseline_series_final_value_and_gives_the_speed_up() {
        // The measured curves: constant 15.0 / 6.7 / 4.8 / 3.6 at 400 / 800 / 1600 /
        // 2400 steps, Min-SNR-5 14.2 / 5.8 / 3.4 at 400 / 800 / 1600.
        let rows = vec![
            row(0, "constant", 400, 15.0),
            row(1, "constant", 800, 6.7),
            row(2, "constant", 1600, 4.8),
            row(3, "constant", 2400, 3.6),
            row(4, "min_snr { gamma = 5 }", 400, 14.2),
            row(5, "min_snr { gamma = 5 }", 800, 5.8),
            row(6, "min_snr { gamma = 5 }", 1600, 3.4),
        ];
        let series = vec![
            Series { base: "score".into(), label: vec![("w".into(), "constant".into())], points: vec![0, 1, 2, 3] },
            Series {
                base: "score".into(),
                label: vec![("w".into(), "min_snr { gamma = 5 }".into())],
                points: vec![4, 5, 6],
            },
        ];
        let exp = Experiment { rows, length_bindings: ["n".to_string()].into(), series };
        let got = reach(&exp, "classifier_distance", &Goal::Baseline("w".into(), "constant".into()));
        assert_eq!(got.len(), 1, "the baseline itself is left out");
        assert!((got[0].target - 3.6).abs() < 1e-12);
        assert_eq!(got[0].baseline, Some((0, 2400)));
        let (steps, exact) = got[0].steps.unwrap();
        assert!(exact && (steps - (800.0 + 800.0 * (3.6 - 5.8) / (3.4 - 5.8))).abs() < 1e-9);
        assert!((got[0].ratio().unwrap() - 2400.0 / steps).abs() < 1e-12 && got[0].ratio().unwrap() > 1.5);
        let fixed = reach(&exp, "classifier_distance", &Goal::Value(6.0));
        assert_eq!(fixed.len(), 2);
        assert!(fixed[0].steps.unwrap().0 > fixed[1].steps.unwrap().0, "Min-SNR gets to 6 sooner");
    }
}
