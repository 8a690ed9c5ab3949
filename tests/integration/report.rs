//! `msnr plot` and `msnr report` end to end on a tiny sweep run by the real worker,
//! and the report checked in a real headless browser (Debian's `chromium`, which
//! `.ci/run` installs through `tests/setup/chromium.sh`): it loads from disk with no
//! console error, every image is decoded, and the metrics table holds the lockfile's
//! values exactly.

mod browser;

use std::collections::BTreeMap;

use serde_json::Value;

use super::cli::Project;

/// Two weightings x two step counts on 20 digits: 4 trains (log every step), 4 samplers,
/// a classifier and 4 scores in its feature space; seconds on a CPU.
const SWEEP: &str = r#"stage digits = images { path = "digits", channels = 1 }
stage judge = classifier { data = digits, steps = 2, batch = 4, holdout = 4 }
sweep w in [constant, min_snr { gamma = 5 }], s in [2, 4] {
  stage m = train { data = digits, net = unet { channels = 32, mults = [1], attention = [] }, weighting = w, steps = s, batch = 2, log_every = 1, optimizer = adamw { lr = 0.05 } }
  stage images = sample { model = m, sampler = ddim { steps = 2 }, count = 4, batch = 4 }
  stage score = fid { samples = images, reference = digits, classifier = judge, kid_subsets = 2 }
}
"#;

/// Per stage, the metrics the lockfile recorded.
fn recorded_metrics(p: &Project) -> BTreeMap<String, BTreeMap<String, f64>> {
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(p.path("p.msnr.lock")).unwrap()).unwrap();
    let mut out = BTreeMap::new();
    for (stage, entry) in lock["stages"].as_object().unwrap() {
        let metrics: BTreeMap<String, f64> =
            entry["metrics"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect();
        if !metrics.is_empty() {
            out.insert(stage.clone(), metrics);
        }
    }
    out
}

#[test]
fn plot_and_report_of_a_tiny_sweep_open_in_a_headless_browser() {
    let p = Project::new();
    p.digits("digits", 2).write("p.msnr", SWEEP);
    // `run --report` writes the page once the run is recorded; `report` rewrites it.
    p.msnr(&["run", "--report", "p.msnr"]).success().stdout_has("p.report.html");
    assert!(std::fs::remove_file(p.path("p.report.html")).is_ok(), "written by run --report");
    let plotted = p.msnr(&["plot", "p.msnr"]);
    plotted.success();
    let dir = p.path("p.plots");
    for name in ["loss-m", "mse-by-t-m", "mse-over-steps-m_w=constant_s=4", "classifier_distance-score", "kid-score"] {
        let png = image::open(dir.join(format!("{name}.png")))
            .unwrap_or_else(|e| panic!("{name}.png: {e}\n{}", plotted.stdout()));
        assert_eq!((png.width(), png.height()), (900, 540));
        assert!(std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap().starts_with("<svg"));
    }
    assert!(dir.join("samples-images_w=constant_s=2.png").is_file(), "grids copied");
    // One line per weighting: the step count is the x axis, not a series.
    let metric = std::fs::read_to_string(dir.join("classifier_distance-score.svg")).unwrap();
    assert!(
        metric.contains("w=constant\n") && metric.contains("w=min_snr{gamma=5}\n"),
        "legend from the bindings:\n{metric}"
    );
    assert!(!metric.contains("s=2"), "the steps variable is the x axis, not a legend entry");
    // The 4-step trains continued the 2-step ones: their curves hold both.
    let loss = std::fs::read_to_string(dir.join("loss-m.svg")).unwrap();
    assert!(loss.contains("w=constant,s=4\n") && !loss.contains("w=constant,s=2\n"), "{loss}");

    p.msnr(&["report", "p.msnr"]).success().stdout_has("p.report.html");
    let html = std::fs::read_to_string(p.path("p.report.html")).unwrap();
    assert!(html.contains("14 stages: 14 cached, 0 stale, 0 never run, 0 blocked."), "states as plan decides");
    assert!(html.contains("<td>m[w=min_snr{gamma=5},s=4]</td>") && html.contains("libtorch"));
    check_in_browser(&p, &recorded_metrics(&p));
}

/// Says on the real stderr (which the test harness does not capture, so a skip is never
/// silent) that the browser check did not run, and why.
fn skipped(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED the browser check of the report: {why}");
}

/// A headless browser, or `None` (with a message) where none can run outside CI; in CI
/// (`CI` set) a missing or broken browser fails the test.
fn browser() -> Option<browser::Browser> {
    let in_ci = std::env::var_os("CI").is_some();
    let Some(exe) = browser::find() else {
        assert!(!in_ci, "no headless browser in CI: .ci/run installs Debian's chromium (tests/setup/chromium.sh)");
        skipped("no chromium on PATH (install it: tests/setup/chromium.sh, or set MSNR_CHROMIUM)");
        return None;
    };
    match browser::Browser::start(&exe) {
        Ok(b) => Some(b),
        Err(e) if !in_ci => {
            skipped(&format!("{} cannot run: {e}", exe.display()));
            None
        }
        Err(e) => panic!("{} cannot run: {e}", exe.display()),
    }
}

/// The report in headless Chromium: no console error, every image decoded, the metrics exact.
fn check_in_browser(p: &Project, recorded: &BTreeMap<String, BTreeMap<String, f64>>) {
    let Some(mut chrome) = browser() else { return };
    let loaded = chrome.load(&p.path("p.report.html"), CHECK).unwrap();
    assert!(loaded.errors.is_empty(), "the page logged errors: {:#?}", loaded.errors);
    let page: Value = serde_json::from_str(loaded.value.as_str().unwrap()).unwrap();
    let images = page["images"].as_array().unwrap();
    let pngs = std::fs::read_dir(p.path("p.plots"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
        .count();
    assert_eq!(images.len(), pngs, "every plot and grid on the page");
    assert_eq!(pngs, 2 + 2 + 4 + 4, "loss and MSE by t of the sweep, MSE over steps per whole run, 4 metrics, 4 grids");
    for img in images {
        assert!(img["width"].as_u64().unwrap() > 0 && img["complete"] == true, "image not decoded: {img}");
    }
    let mut shown: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for cell in page["metrics"].as_array().unwrap() {
        let value: f64 = cell["value"].as_str().unwrap().parse().unwrap();
        shown
            .entry(cell["stage"].as_str().unwrap().to_string())
            .or_default()
            .insert(cell["metric"].as_str().unwrap().to_string(), value);
    }
    assert_eq!(&shown, recorded, "the metrics table holds exactly the recorded values");
    assert_eq!(page["nodes"], 14, "every stage in the drawn graph");
}

/// Run in the page: its images, metric cells and graph nodes.
const CHECK: &str = "JSON.stringify({
  images: [...document.images].map(i => ({ complete: i.complete, width: i.naturalWidth })),
  metrics: [...document.querySelectorAll('#metrics td[data-metric]')].map(td => ({
    stage: td.parentElement.dataset.stage, metric: td.dataset.metric, value: td.dataset.value })),
  nodes: document.querySelectorAll('svg.dag g.node').length,
})";

#[test]
fn a_report_before_any_run_shows_never_run_stages_with_escaped_parameters() {
    let p = Project::new();
    p.write("p.msnr", "stage raw = download { url = \"file:///nowhere/<b>&x.zip\" }\n");
    p.msnr(&["plot", "p.msnr"]).failure().stderr_has("nothing to plot yet: run `msnr run p.msnr` first");
    p.msnr(&["report", "p.msnr", "--out", "r.html"]).success();
    let html = std::fs::read_to_string(p.path("r.html")).unwrap();
    assert!(html.contains("url = &quot;file:///nowhere/&lt;b&gt;&amp;x.zip&quot;"), "parameter escaped");
    assert!(!html.contains("<b>"));
    assert!(
        html.contains("1 stage: 0 cached, 0 stale, 1 never run, 0 blocked.")
            && html.contains("No metrics recorded yet.")
    );
}

#[test]
fn run_report_after_a_failed_stage_still_fails_and_shows_what_completed() {
    let p = Project::new();
    p.digits("digits", 1).write(
        "p.msnr",
        "stage digits = images { path = \"digits\", channels = 1 }\nstage raw = download { url = \"file:///nowhere/x.zip\" }\n",
    );
    p.msnr(&["run", "--report", "p.msnr"]).failure().stderr_has("nowhere").stdout_has("p.report.html");
    let html = std::fs::read_to_string(p.path("p.report.html")).unwrap();
    assert!(html.contains("2 stages: 1 cached, 0 stale, 1 never run, 0 blocked."), "{html}");
}

#[test]
fn doc_markdown_prints_the_reference_tables() {
    let p = Project::new();
    p.msnr(&["doc", "--markdown"]).success().stdout_has("#### `train` -> `model`").stdout_has("| `min_snr` |");
}

/// The browser check can fail: a console error, a missing file and an undecodable image are seen.
#[test]
fn the_browser_check_sees_console_errors_missing_files_and_broken_images() {
    let Some(mut chrome) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><img src=\"data:image/png;base64,AAAA\"><img src=\"missing.png\">\
         <script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let loaded = chrome.load(&page, CHECK).unwrap();
    assert!(loaded.errors.iter().any(|e| e.contains("boom")), "{:#?}", loaded.errors);
    assert!(loaded.errors.iter().any(|e| e.contains("missing.png")), "{:#?}", loaded.errors);
    let value: Value = serde_json::from_str(loaded.value.as_str().unwrap()).unwrap();
    assert_eq!(value["images"].as_array().unwrap().iter().filter(|i| i["width"] == 0).count(), 2);
}
