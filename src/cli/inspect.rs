//! The read-only verbs: check, plan, graph, status (compare has its own module).

use std::path::Path;

use super::Failure;
use crate::cache::Depth;
use crate::graph::plan::{self, Status};
use crate::graph::render::{self, Format};
use crate::run::project::Project;
use crate::run::slurm::config::{ExecutorKind, JobOf, ProjectConfig};

/// `msnr check`: parse, type-check, validate the graph.
pub(super) fn check(file: &Path, set: &[(String, String)]) -> Result<(), Failure> {
    let project = Project::open(file, set)?;
    let n = project.pipeline.stages.len();
    crate::console::out_line(&format!("{}: ok ({n} stage{})", file.display(), if n == 1 { "" } else { "s" }));
    Ok(())
}

/// `msnr plan`: cached or stale, and why, per stage `msnr run` would run (the main file's
/// stages and what they read), and how many stages of imported files it leaves out. With the
/// SLURM executor (`--executor slurm`, or msnr.toml's), also the `sbatch` resources of each
/// stage that will run, or why its job would be refused (a `nodes` that does not divide
/// `devices`).
pub(super) fn plan(file: &Path, set: &[(String, String)], executor: Option<ExecutorKind>) -> Result<(), Failure> {
    let project = Project::open(file, set)?;
    let store = project.store()?;
    let keyer = project.keyer(&store)?;
    let selected = super::run::select(&project, &[])?;
    let steps = plan::plan(&project.pipeline, &project.dag, &selected, (&store, &project.lockfile, &keyer));
    let config = ProjectConfig::load(&project.root).map_err(Failure::Message)?;
    let slurm = (executor.unwrap_or(config.executor.kind) == ExecutorKind::Slurm)
        .then(|| (super::run::planned(&project, &selected), &config.slurm));
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|step| {
            let stage = &project.pipeline.stages[step.stage];
            let (status, why) = match &step.status {
                Status::Cached { key, .. } => ("cached", key[..12].to_string()),
                Status::Stale(reasons) => {
                    ("run", reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                }
                Status::Blocked(why) => ("blocked", why.clone()),
            };
            let mut row = vec![stage.name.clone(), stage.kind.clone(), status.to_string(), why];
            if let Some((planned, slurm)) = &slurm {
                let job = match (&step.status, planned.get(&stage.name)) {
                    (Status::Stale(_), Some(p)) => {
                        let resources =
                            slurm.resources(p.kind, &JobOf { name: &stage.name, device: &p.device, params: &p.params });
                        resources.check().map_or_else(|e| format!("refused: {e}"), |()| resources.args().join(" "))
                    }
                    _ => String::new(),
                };
                row.insert(3, job);
            }
            row
        })
        .collect();
    let header: &[&str] = if slurm.is_some() {
        &["STAGE", "KIND", "STATUS", "SLURM JOB", "KEY / WHY"]
    } else {
        &["STAGE", "KIND", "STATUS", "KEY / WHY"]
    };
    crate::console::out(&table(header, &rows));
    let unused = selected.iter().filter(|&&s| !s).count();
    if unused > 0 {
        let s = if unused == 1 { "" } else { "s" };
        crate::console::out_line(&format!(
            "{unused} stage{s} of imported files not used by this pipeline (not run; `msnr run --only NAME` runs one)"
        ));
    }
    Ok(())
}

/// `msnr graph`: dot or mermaid.
pub(super) fn graph(file: &Path, set: &[(String, String)], format: Format) -> Result<(), Failure> {
    let project = Project::open(file, set)?;
    crate::console::out(&render::render(&project.pipeline, &project.dag, format));
    Ok(())
}

/// `msnr status`: per stage, what the lockfile recorded and whether the store still has it
/// whole: each file present with its size, or, with `check`, re-hashed (`nix-store --verify
/// --check-contents`); damaged files are listed under the table, and `check` then fails.
pub(super) fn status(file: &Path, set: &[(String, String)], check: bool) -> Result<(), Failure> {
    let project = Project::open(file, set)?;
    let store = project.store()?;
    let depth = if check { Depth::Full } else { Depth::Stat };
    let (mut rows, mut damaged, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for stage in &project.pipeline.stages {
        let Some(entry) = project.lockfile.stages.get(&stage.name) else {
            rows.push([stage.name.clone(), "never run".into(), String::new(), String::new()]);
            continue;
        };
        let present = store.get(&entry.key);
        let damage = match &present {
            Some(e) => e.check(depth).map_err(|e| Failure::Message(e.to_string()))?,
            None => Vec::new(),
        };
        let state = match (&present, damage.is_empty()) {
            (None, _) => "not in store",
            (Some(_), true) => "stored",
            (Some(_), false) => "CORRUPTED",
        };
        for d in &damage {
            notes.push(format!("{}: {d}", stage.name));
        }
        if !damage.is_empty() {
            damaged.push(stage.name.clone());
        }
        let out = present.map(|e| e.out_dir.display().to_string()).unwrap_or_default();
        let metrics: Vec<String> = entry.metrics.iter().map(|(k, v)| format!("{k}={v:.6}")).collect();
        rows.push([stage.name.clone(), state.into(), out, metrics.join(" ")]);
    }
    crate::console::out(&table(&["STAGE", "STATE", "OUTPUT", "METRICS"], &rows));
    for note in &notes {
        crate::console::out_line(note);
    }
    if damaged.is_empty() || !check {
        return Ok(());
    }
    Err(Failure::Message(format!(
        "corrupted store entries: {}; `msnr run {}` moves them aside and rebuilds them",
        damaged.join(", "),
        file.display()
    )))
}

/// Left-aligned columns separated by two spaces; plain text for pipes and tests.
pub(super) fn table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let parts: Vec<String> = cells.iter().zip(&width).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.as_ref().iter().map(String::as_str).collect()));
    }
    out
}
