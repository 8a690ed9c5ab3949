//! The report page: one self-contained HTML file (CSS inline, images as `data:`
//! URIs, the DAG as inline SVG, no script) with the stage graph, the metrics
//! table, the plots and sample grids, each stage's state and parameters, and the
//! versions the lockfile recorded. Every user string goes through [`escape`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::dag::{self, Node};
use super::html::escape;
use super::plots::Topic;

/// A stage's cache state, as `msnr plan` decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its output is in the store under its current key.
    Cached,
    /// It ran, but its key changed or its output left the store: it would run again.
    Stale,
    /// No lockfile entry.
    NeverRun,
    /// It cannot run (a planned kind, a key that cannot be computed).
    Blocked,
}

impl State {
    /// The CSS class and the words shown.
    #[must_use]
    pub fn words(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Stale => "stale",
            Self::NeverRun => "never-run",
            Self::Blocked => "blocked",
        }
    }
}

/// Versions the lockfile recorded for a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// msnr's version.
    pub msnr: String,
    /// The kind's implementation version.
    pub kind: u32,
    /// libtorch's, for torch stages.
    pub libtorch: Option<String>,
    /// The device kind, for torch stages.
    pub device: Option<String>,
}

/// One stage's row.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    /// Instance name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Cache state.
    pub state: State,
    /// Why it would run (empty when cached).
    pub why: String,
    /// Parameters as written in msnr syntax, unset optional ones left out.
    pub params: Vec<(String, String)>,
    /// Recorded metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Recorded versions (none when it never ran).
    pub versions: Option<Versions>,
}

/// An image on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Which section it goes in.
    pub topic: Topic,
    /// Its caption.
    pub title: String,
    /// A `data:` URI.
    pub src: String,
    /// A relative link to its SVG, when there is one beside the page.
    pub svg_href: Option<String>,
}

/// Everything on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The pipeline file's name.
    pub title: String,
    /// Stages in declaration order.
    pub stages: Vec<StageRow>,
    /// Edges as (input, reader) indices into `stages`.
    pub edges: Vec<(usize, usize)>,
    /// A topological order of `stages`.
    pub order: Vec<usize>,
    /// Plots and sample grids.
    pub figures: Vec<Figure>,
    /// What could not be shown, and why.
    pub notes: Vec<String>,
    /// The msnr that wrote the page.
    pub generator: String,
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
td.num{text-align:right;font-family:monospace}code{font-size:.95em}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}\
.dag .edge{fill:none;stroke:#555;stroke-width:1.5}.dag rect{stroke:#555;fill:#eee}.dag text{font-size:12px;font-family:sans-serif}\
.dag .name{font-weight:bold}.cached rect,span.cached{fill:#d4edda;background:#d4edda}.stale rect,span.stale{fill:#fff3cd;background:#fff3cd}\
.never-run rect,span.never-run{fill:#e2e3e5;background:#e2e3e5}.blocked rect,span.blocked{fill:#f8d7da;background:#f8d7da}\
span.state{padding:0 .4em;border-radius:3px}.scroll{overflow-x:auto}";

/// The whole page.
#[must_use]
pub fn render(page: &Page) -> String {
    let title = escape(&page.title);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}: msnr report</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p>{}</p>\n",
        summary(&page.stages)
    );
    graph(&mut out, page);
    metrics(&mut out, &page.stages);
    figures(&mut out, &page.figures);
    stages(&mut out, &page.stages);
    versions(&mut out, &page.stages);
    if !page.notes.is_empty() {
        out.push_str("<h2>Not shown</h2>\n<ul id=\"notes\">\n");
        for n in &page.notes {
            let _ = writeln!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul>\n");
    }
    let _ = write!(out, "<footer><p>Written by msnr {}.</p></footer>\n</body>\n</html>\n", escape(&page.generator));
    out
}

fn summary(stages: &[StageRow]) -> String {
    let count = |s: State| stages.iter().filter(|r| r.state == s).count();
    format!(
        "{} stage{}: {} cached, {} stale, {} never run, {} blocked.",
        stages.len(),
        if stages.len() == 1 { "" } else { "s" },
        count(State::Cached),
        count(State::Stale),
        count(State::NeverRun),
        count(State::Blocked)
    )
}

fn graph(out: &mut String, page: &Page) {
    let nodes: Vec<Node> = page
        .stages
        .iter()
        .map(|s| Node { name: s.name.clone(), kind: s.kind.clone(), state: s.state.words().to_string() })
        .collect();
    let _ = writeln!(out, "<h2>Graph</h2>\n<div class=\"scroll\">{}</div>", dag::svg(&nodes, &page.edges, &page.order));
}

/// The recorded metrics: the exact value in `data-value` (Rust's shortest round-trip form),
/// six significant digits shown.
fn metrics(out: &mut String, stages: &[StageRow]) {
    out.push_str("<h2>Metrics</h2>\n");
    let names: BTreeSet<&String> = stages.iter().flat_map(|s| s.metrics.keys()).collect();
    if names.is_empty() {
        out.push_str("<p>No metrics recorded yet.</p>\n");
        return;
    }
    out.push_str("<div class=\"scroll\"><table id=\"metrics\">\n<tr><th>stage</th>");
    for n in &names {
        let _ = write!(out, "<th>{}</th>", escape(n));
    }
    out.push_str("</tr>\n");
    for s in stages.iter().filter(|s| !s.metrics.is_empty()) {
        let _ = write!(out, "<tr data-stage=\"{0}\"><td>{0}</td>", escape(&s.name));
        for n in &names {
            match s.metrics.get(*n) {
                Some(v) => {
                    let _ = write!(
                        out,
                        "<td class=\"num\" data-metric=\"{}\" data-value=\"{v}\">{}</td>",
                        escape(n),
                        shown(*v)
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
}

/// Six significant digits.
#[must_use]
pub fn shown(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if (1e-3..1e6).contains(&v.abs()) {
        // floor(log10 |v|) is in -3..=5 here, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let magnitude = v.abs().log10().floor() as i32;
        let decimals = usize::try_from(5 - magnitude).unwrap_or(0);
        return format!("{v:.decimals$}");
    }
    format!("{v:.5e}")
}

fn figures(out: &mut String, figures: &[Figure]) {
    let sections = [
        (Topic::Metric, "Metrics against training steps"),
        (Topic::Loss, "Training loss"),
        (Topic::Timesteps, "MSE per timestep"),
        (Topic::Samples, "Samples"),
    ];
    for (topic, heading) in sections {
        let here: Vec<&Figure> = figures.iter().filter(|f| f.topic == topic).collect();
        if here.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<h2>{heading}</h2>");
        for f in here {
            let title = escape(&f.title);
            let link = f.svg_href.as_ref().map(|h| format!(" (<a href=\"{}\">SVG</a>)", escape(h))).unwrap_or_default();
            let _ = writeln!(
                out,
                "<figure><img src=\"{}\" alt=\"{title}\"><figcaption>{title}{link}</figcaption></figure>",
                f.src
            );
        }
    }
}

fn stages(out: &mut String, stages: &[StageRow]) {
    out.push_str("<h2>Stages</h2>\n<table id=\"stages\">\n<tr><th>stage</th><th>kind</th><th>state</th><th>parameters</th></tr>\n");
    for s in stages {
        let params: Vec<String> =
            s.params.iter().map(|(k, v)| format!("<code>{} = {}</code>", escape(k), escape(v))).collect();
        let why = if s.why.is_empty() { String::new() } else { format!("<br>{}", escape(&s.why)) };
        let _ = writeln!(
            out,
            "<tr data-stage=\"{0}\"><td>{0}</td><td>{1}</td><td><span class=\"state {2}\">{2}</span>{why}</td><td>{3}</td></tr>",
            escape(&s.name),
            escape(&s.kind),
            s.state.words(),
            params.join("<br>")
        );
    }
    out.push_str("</table>\n");
}

fn versions(out: &mut String, stages: &[StageRow]) {
    out.push_str("<h2>Versions</h2>\n<table id=\"versions\">\n<tr><th>stage</th><th>msnr</th><th>kind version</th><th>libtorch</th><th>device</th></tr>\n");
    for s in stages {
        let Some(v) = &s.versions else { continue };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            escape(&v.msnr),
            v.kind,
            escape(v.libtorch.as_deref().unwrap_or("-")),
            escape(v.device.as_deref().unwrap_or("-"))
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, state: State, metrics: &[(&str, f64)]) -> StageRow {
        StageRow {
            name: name.into(),
            kind: "fid".into(),
            state,
            why: if state == State::Cached { String::new() } else { "gamma: 5 -> <1>".into() },
            params: vec![("label".into(), "\"<b>\"".into())],
            metrics: metrics.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            versions: Some(Versions {
                msnr: "0.1.0".into(),
                kind: 3,
                libtorch: Some("2.11.0".into()),
                device: Some("cpu".into()),
            }),
        }
    }

    fn page(stages: Vec<StageRow>) -> Page {
        Page {
            title: "<x>.msnr".into(),
            stages,
            edges: vec![(0, 1)],
            order: vec![0, 1],
            figures: vec![Figure {
                topic: Topic::Loss,
                title: "a & b".into(),
                src: "data:image/png;base64,AA==".into(),
                svg_href: Some("p/a b.svg".into()),
            }],
            notes: vec!["m: never run".into()],
            generator: "0.1.0".into(),
        }
    }

    #[test]
    fn the_page_escapes_every_user_string_and_records_exact_metrics() {
        let html = render(&page(vec![row("s<1>", State::Cached, &[("fid", 0.1 + 0.2)]), row("t", State::Stale, &[])]));
        assert!(!html.contains("<x>") && !html.contains("s<1>") && !html.contains("<b>") && !html.contains("<1>"));
        assert!(html.contains("<h1>&lt;x&gt;.msnr</h1>"));
        assert!(
            html.contains("data-value=\"0.30000000000000004\">0.300000</td>"),
            "exact value kept, six digits shown"
        );
        assert!(html.contains("<code>label = &quot;&lt;b&gt;&quot;</code>"));
        assert!(html.contains("2 stages: 1 cached, 1 stale, 0 never run, 0 blocked."));
        assert!(html.contains("<a href=\"p/a b.svg\">SVG</a>") && html.contains("alt=\"a &amp; b\""));
        assert!(!html.contains("<script"), "no script: nothing to fail in the browser");
    }

    #[test]
    fn shows_six_significant_digits() {
        assert_eq!(shown(1.666_123_456), "1.66612");
        assert_eq!(shown(461.0), "461.000");
        assert_eq!(shown(-0.056_25), "-0.0562500");
        assert_eq!(shown(1.5e-7), "1.50000e-7");
        assert_eq!(shown(0.0), "0");
    }

    #[test]
    fn no_metrics_says_so() {
        let html = render(&page(vec![row("a", State::NeverRun, &[]), row("b", State::Blocked, &[])]));
        assert!(html.contains("No metrics recorded yet.") && !html.contains("id=\"metrics\""));
    }
}
