//! `msnr run`: execute what is stale, record the lockfile.

use std::collections::BTreeMap;
use std::path::Path;

use super::Failure;
use crate::cache::{LockEntry, Lockfile, Store, Versions};
use crate::console;
use crate::run::executor::{Executor, Outcome, Resources};
use crate::run::interrupt;
use crate::run::keys::{self, Keyer};
use crate::run::launcher::Launcher;
use crate::run::progress::Progress;
use crate::run::project::Project;
use crate::run::roots;
use crate::run::slurm::ahead::Planned;
use crate::run::slurm::config::{ExecutorKind, ProjectConfig};
use crate::run::slurm::{self, Slurm};
use crate::run::{budget, device};
use crate::stages::kinds;

/// How `msnr run` runs.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Options {
    /// Cores the running stages share (default: the cores available to this process).
    pub cores: Option<usize>,
    /// Stages run at once at most (default: as many as the cores allow).
    pub jobs: Option<usize>,
    /// Run stages without their lockfile pins, so downloads pin what they fetch now.
    pub update_pins: bool,
    /// Where stages run (default: `[executor] kind` of msnr.toml, else here).
    pub executor: Option<ExecutorKind>,
}

/// Runs the pipeline (or the `only` stages and their inputs).
pub(super) fn run(file: &Path, set: &[(String, String)], only: &[String], options: Options) -> Result<(), Failure> {
    let mut project = Project::open(file, set)?;
    let selected = select(&project, only)?;
    refuse_unimplemented(&project, &selected)?;
    Lockfile::check_writable(&project.lock_path)
        .map_err(|e| Failure::Message(format!("the lockfile must be writable: {e} (nothing was run)")))?;
    let store = project.store()?;
    let _running = store.running().map_err(|e| Failure::Message(e.to_string()))?;
    let keyer = project.keyer(&store)?;
    let on_interrupt = |outcomes: &BTreeMap<usize, Outcome>| interrupted(&project, &store, outcomes);
    let outcomes = execute(&project, &store, &keyer, selected, options, &on_interrupt)?;
    let mut memo = keyer.into_memo();
    if memo.files_hashed() > 0 {
        #[allow(clippy::cast_precision_loss)]
        let gb = memo.bytes_hashed() as f64 / 1e9;
        console::err_line(&format!(
            "msnr: hashed {} input file(s), {gb:.3} GB (unchanged files are remembered)",
            memo.files_hashed()
        ));
    }
    // Atomic: with runs at once, the last one's memo wins (a cache: nothing is lost but time).
    memo.save().map_err(|e| Failure::Message(e.to_string()))?;
    if let Some(signal) = interrupt::received() {
        interrupted(&project, &store, &outcomes);
        return Err(Failure::Interrupted(signal));
    }
    // Bookkeeping under the short store-wide lock: another run may write the same files.
    let lock = store.lock().map_err(|e| Failure::Message(e.to_string()))?;
    let lockfile = record(&project, &outcomes);
    say_new_pins(&project.lockfile, &lockfile);
    project.lockfile = lockfile;
    project.lockfile.write(&project.lock_path).map_err(|e| Failure::Message(e.to_string()))?;
    roots::register(&project.root, &project.lock_path)
        .map_err(|e| Failure::Message(format!("registering the lockfile: {e}")))?;
    drop(lock);
    summarize(&project, &outcomes)
}

/// Runs the `selected` stages of `project` against `store`, pins taken from the lockfile;
/// Ctrl-C stops the run (`on_interrupt` records what completed when the run cannot wait).
pub(super) fn execute(
    project: &Project,
    store: &Store,
    keyer: &Keyer,
    selected: Vec<bool>,
    options: Options,
    on_interrupt: &(dyn Fn(&BTreeMap<usize, Outcome>) + Sync),
) -> Result<BTreeMap<usize, Outcome>, Failure> {
    interrupt::install().map_err(|e| Failure::Message(format!("cannot handle Ctrl-C: {e}")))?;
    let pins = project.lockfile.stages.iter().map(|(k, v)| (k.clone(), v.pins.clone())).collect();
    let launcher = launcher(project, store, &selected, options.executor)?;
    let resources = match launcher {
        Launcher::Local => Resources {
            cores: options.cores.unwrap_or_else(budget::available_cores).max(1),
            jobs: options.jobs.unwrap_or(usize::MAX).max(1),
            gpus: device::gpus(),
        },
        // Each stage is a job slot; its cores and GPUs are the cluster's to give.
        Launcher::Slurm(_) => {
            let jobs = options.jobs.unwrap_or(MAX_JOBS).max(1);
            Resources { cores: jobs, jobs, gpus: Vec::new() }
        }
    };
    let (pipeline, dag, checked, update_pins) =
        (&project.pipeline, &project.dag, &project.checked, options.update_pins);
    let launcher = &launcher;
    let executor = Executor {
        pipeline,
        dag,
        checked,
        store,
        keyer,
        pins,
        update_pins,
        selected,
        resources,
        launcher,
        on_interrupt,
    };
    Ok(executor.run(&Progress::new()))
}

/// Jobs in the SLURM queue at once at most, unless `--jobs` says.
const MAX_JOBS: usize = 256;

/// The executor `--executor` names, else the one msnr.toml's `[executor] kind` names.
fn launcher(
    project: &Project,
    store: &Store,
    selected: &[bool],
    executor: Option<ExecutorKind>,
) -> Result<Launcher, Failure> {
    let config = ProjectConfig::load(&project.root).map_err(Failure::Message)?;
    match executor.unwrap_or(config.executor.kind) {
        ExecutorKind::Local => Ok(Launcher::Local),
        ExecutorKind::Slurm if !slurm::job::available() => Err(Failure::Message(
            "the SLURM executor needs `sbatch` and `squeue` on PATH (run on the cluster's login node); nothing was run"
                .into(),
        )),
        ExecutorKind::Slurm => {
            let parent = store.root().join("slurm");
            let (slurm, cancelled) =
                Slurm::new(config.slurm, planned(project, selected), &parent).map_err(Failure::Message)?;
            if cancelled > 0 {
                console::err_line(&format!("msnr: cancelled {cancelled} SLURM job(s) that a killed run left"));
            }
            Ok(Launcher::Slurm(Box::new(slurm)))
        }
    }
}

/// The selected stages as the SLURM executor queues them ahead (before they are keyed).
pub(super) fn planned(project: &Project, selected: &[bool]) -> BTreeMap<String, Planned> {
    let stages = &project.pipeline.stages;
    let names = |ix: Vec<usize>| ix.into_iter().filter(|&j| selected[j]).map(|j| stages[j].name.clone()).collect();
    let mut out = BTreeMap::new();
    for (stage, _) in stages.iter().zip(selected).filter(|(_, &s)| s) {
        let Ok(kind) = kinds::implemented(&stage.kind) else { continue };
        let device = if kind.torch() { keys::torch_env(stage).map(|t| t.device).ok() } else { None };
        out.insert(
            stage.name.clone(),
            Planned {
                kind,
                device: device.unwrap_or_else(|| "cpu".to_string()),
                params: stage.params.clone(),
                inputs: names(project.dag.inputs(&stage.name)),
                readers: names(project.dag.readers(&stage.name)),
            },
        );
    }
    out
}

/// Names every pin that differs from the lockfile's (only `--update-pins` can change one).
fn say_new_pins(old: &Lockfile, new: &Lockfile) {
    for (stage, entry) in &new.stages {
        for (name, value) in &entry.pins {
            match old.stages.get(stage).and_then(|e| e.pins.get(name)) {
                Some(was) if was != value => {
                    console::err_line(&format!("msnr: {stage}: {name} pin updated: {was} -> {value}"));
                }
                _ => {}
            }
        }
    }
}

/// After Ctrl-C: records the stages that completed, removes this run's staging folders and
/// says where a re-run picks up.
fn interrupted(project: &Project, store: &Store, outcomes: &BTreeMap<usize, Outcome>) {
    let _lock = store.lock();
    let lockfile = record(project, outcomes);
    if let Err(e) = lockfile.write(&project.lock_path) {
        console::err_line(&format!("msnr: {e}"));
    } else if let Err(e) = roots::register(&project.root, &project.lock_path) {
        console::err_line(&format!("msnr: registering the lockfile: {e}"));
    }
    store.remove_own_staging();
    let mut said = false;
    for (&i, outcome) in outcomes {
        let name = &project.pipeline.stages[i].name;
        match outcome {
            Outcome::Interrupted(Some(step)) => {
                console::err_line(&format!("msnr: interrupted: re-running resumes `{name}` from step {step}"));
            }
            Outcome::Interrupted(None) => console::err_line(&format!("msnr: interrupted: `{name}` did not complete")),
            _ => continue,
        }
        said = true;
    }
    if !said {
        console::err_line("msnr: interrupted");
    }
}

/// The stages to consider: the named ones, else those the main file declares (all when it
/// declares none), and everything they read. A stage of an imported file runs only when
/// one of these needs it, as make and Snakemake run their targets.
pub(super) fn select(project: &Project, only: &[String]) -> Result<Vec<bool>, Failure> {
    let stages = &project.pipeline.stages;
    if only.is_empty() {
        let main = project.pipeline.sources.find(&project.pipeline.path);
        let targets: Vec<usize> = (0..stages.len()).filter(|&i| Some(stages[i].span.source) == main).collect();
        if targets.is_empty() {
            return Ok(vec![true; stages.len()]);
        }
        return Ok(project.dag.closure(&targets));
    }
    let mut targets = Vec::new();
    for name in only {
        let i = project.pipeline.stages.iter().position(|s| &s.name == name).ok_or_else(|| {
            let names: Vec<&str> = project.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
            Failure::Message(format!("--only {name}: no such stage (stages: {})", names.join(", ")))
        })?;
        targets.push(i);
    }
    Ok(project.dag.closure(&targets))
}

/// Refuses, before anything runs, stages whose kind is declared but not implemented.
pub(super) fn refuse_unimplemented(project: &Project, selected: &[bool]) -> Result<(), Failure> {
    let missing: Vec<String> = project
        .pipeline
        .stages
        .iter()
        .zip(selected)
        .filter(|(s, &sel)| sel && kinds::implemented(&s.kind).is_err())
        .map(|(s, _)| format!("`{}` (kind `{}`)", s.name, s.kind))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure::Message(format!(
        "cannot run {}: the stage kind is declared in the stdlib but has no implementation yet",
        missing.join(", ")
    )))
}

/// The lockfile with the outcome of every completed stage written in; without entries of
/// stages no longer in the pipeline. Read again from disk (call with the store-wide lock
/// held), so what a concurrent run of the same pipeline recorded meanwhile is kept.
fn record(project: &Project, outcomes: &BTreeMap<usize, Outcome>) -> Lockfile {
    let mut lockfile = Lockfile::read(&project.lock_path).ok().flatten().unwrap_or_else(|| project.lockfile.clone());
    let names: Vec<&str> = project.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
    lockfile.stages.retain(|k, _| names.contains(&k.as_str()));
    for (&i, outcome) in outcomes {
        let (Outcome::Cached(done) | Outcome::Ran(done, _)) = outcome else { continue };
        let stage = &project.pipeline.stages[i];
        let info = kinds::implemented(&stage.kind).expect("only implemented kinds run");
        let entry = LockEntry {
            kind: stage.kind.clone(),
            key: done.entry.key.clone(),
            key_fields: done.key.clone(),
            output: done.entry.meta.output.clone(),
            seed: keys::seed(stage),
            versions: Versions {
                msnr: env!("CARGO_PKG_VERSION").to_string(),
                kind: info.version,
                libtorch: done.key.torch.as_ref().map(|t| t.libtorch.clone()),
            },
            metrics: done.entry.meta.metrics.clone(),
            pins: done.pins.clone(),
        };
        lockfile.stages.insert(stage.name.clone(), entry);
    }
    lockfile
}

fn summarize(project: &Project, outcomes: &BTreeMap<usize, Outcome>) -> Result<(), Failure> {
    let (mut ran, mut cached, mut failed) = (0, 0, Vec::new());
    for (&i, outcome) in outcomes {
        match outcome {
            Outcome::Ran(..) => ran += 1,
            Outcome::Cached(_) => cached += 1,
            Outcome::Failed(_) | Outcome::Skipped(_) | Outcome::Interrupted(_) => {
                failed.push(project.pipeline.stages[i].name.clone());
            }
        }
    }
    console::err_line(&format!("msnr: {ran} ran, {cached} cached, {} failed or skipped", failed.len()));
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Message(format!("stages did not complete: {}", failed.join(", "))))
    }
}
