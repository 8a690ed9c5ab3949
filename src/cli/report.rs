//! `msnr plot` and `msnr report`: what a pipeline's runs look like, from its
//! lockfile and the store. Both read only; neither runs a stage.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::graph::plan::{self, Reason, Status};
use crate::lang::Value;
use crate::report::page::{self, Figure, Page, StageRow, State, Versions};
use crate::report::{gather, html, plots};
use crate::run::project::Project;

/// Where `msnr plot` writes by default: `pipelines/quickstart.msnr` -> `pipelines/quickstart.plots/`.
#[must_use]
pub fn default_plots_dir(pipeline: &Path) -> PathBuf {
    pipeline.with_extension("plots")
}

/// Where `msnr report` writes by default: `pipelines/quickstart.msnr` -> `pipelines/quickstart.report.html`.
#[must_use]
pub fn default_report(pipeline: &Path) -> PathBuf {
    pipeline.with_extension("report.html")
}

/// `msnr plot`: every chart of the pipeline's recorded runs, as PNG and SVG, in `out`.
pub(super) fn plot(file: &Path, set: &[(String, String)], out: Option<&Path>) -> Result<(), Failure> {
    let dir = out.map_or_else(|| default_plots_dir(file), Path::to_path_buf);
    let (_, written, notes) = draw(file, set, &dir)?;
    for note in &notes {
        crate::console::err_line(&format!("note: {note}"));
    }
    if written.is_empty() {
        return Err(Failure::Message(format!("nothing to plot yet: run `msnr run {}` first", file.display())));
    }
    for p in &written {
        crate::console::out_line(&p.png.display().to_string());
        if let Some(svg) = &p.svg {
            crate::console::out_line(&svg.display().to_string());
        }
    }
    Ok(())
}

/// Opens the pipeline, gathers what ran and draws it into `dir`.
fn draw(
    file: &Path,
    set: &[(String, String)],
    dir: &Path,
) -> Result<(Project, Vec<plots::Plot>, Vec<String>), Failure> {
    let project = Project::open(file, set)?;
    let store = project.store()?;
    let g = gather::gather(&project.pipeline, &project.dag, &project.lockfile, &store).map_err(Failure::Message)?;
    let written = plots::write(&g, dir).map_err(Failure::Message)?;
    Ok((project, written, g.notes))
}

/// `msnr report`: one HTML page with the graph, states, parameters, metrics, plots and versions.
pub(super) fn report(file: &Path, set: &[(String, String)], out: Option<&Path>) -> Result<(), Failure> {
    let path = out.map_or_else(|| default_report(file), Path::to_path_buf);
    let plots_dir = if out.is_some() { path.with_extension("plots") } else { default_plots_dir(file) };
    let (project, written, notes) = draw(file, set, &plots_dir)?;
    let store = project.store()?;
    let keyer = project.keyer(&store)?;
    let every = vec![true; project.pipeline.stages.len()];
    let steps = plan::plan(&project.pipeline, &project.dag, &every, (&store, &project.lockfile, &keyer));
    let mut rows: Vec<Option<StageRow>> = vec![None; project.pipeline.stages.len()];
    for step in steps {
        rows[step.stage] = Some(stage_row(&project, step.stage, &step.status));
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let figures = written.iter().map(|p| figure(p, &base)).collect::<Result<Vec<_>, _>>()?;
    let page = Page {
        title: file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned()),
        stages: rows.into_iter().flatten().collect(),
        edges: project.dag.edges().collect(),
        order: project.dag.order().to_vec(),
        figures,
        notes,
        generator: env!("CARGO_PKG_VERSION").to_string(),
    };
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, page::render(&page))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Failure::Message(format!("{}: {e}", path.display())))?;
    crate::console::out_line(&path.display().to_string());
    Ok(())
}

fn figure(p: &plots::Plot, base: &Path) -> Result<Figure, Failure> {
    let svg_href = p.svg.as_ref().and_then(|s| s.strip_prefix(base).ok()).map(|r| r.display().to_string());
    Ok(Figure {
        topic: p.topic,
        title: p.title.clone(),
        src: html::png_data_uri(&p.png).map_err(Failure::Message)?,
        svg_href,
    })
}

/// A stage's row: its plan state, parameters, recorded metrics and versions.
fn stage_row(project: &Project, index: usize, status: &Status) -> StageRow {
    let declared = &project.pipeline.stages[index];
    let (state, why) = match status {
        Status::Cached { .. } => (State::Cached, String::new()),
        Status::Stale(reasons) if reasons.contains(&Reason::NeverRun) => (State::NeverRun, String::new()),
        Status::Stale(reasons) => {
            (State::Stale, reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        }
        Status::Blocked(why) => (State::Blocked, why.clone()),
    };
    let entry = project.lockfile.stages.get(&declared.name);
    StageRow {
        name: declared.name.clone(),
        kind: declared.kind.clone(),
        state,
        why,
        params: declared
            .params
            .iter()
            .filter(|(_, v)| **v != Value::None)
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        metrics: entry.map(|e| e.metrics.clone()).unwrap_or_default(),
        versions: entry.map(|e| Versions {
            msnr: e.versions.msnr.clone(),
            kind: e.versions.kind,
            libtorch: e.versions.libtorch.clone(),
            device: e.key_fields.torch.as_ref().map(|t| t.device.clone()),
        }),
    }
}
