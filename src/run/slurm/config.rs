//! `msnr.toml`, the settings a project commits beside its store: which executor
//! `msnr run` uses, and the resources of its SLURM jobs (defaults for every job, then
//! per stage kind or stage name).
//!
//! ```toml
//! [executor]
//! kind = "slurm"                 # or "local" (the default); --executor overrides it
//!
//! [slurm]
//! poll = 5                       # seconds between two looks at a job's state
//!
//! [slurm.default]                # every job
//! partition = "gpu"
//! time = "4:00:00"
//! mem = "16G"
//! cpus = 8
//! sbatch = ["--account=mylab"]   # anything else sbatch takes
//!
//! [slurm.stage.train]            # a stage kind, or a stage's name (which wins)
//! time = "2-00:00:00"
//! nodes = 2                      # a data-parallel train's devices spread over 2 nodes
//! ```
//!
//! A `train` with `devices = N` becomes one job of N tasks (its ranks), `N / nodes` on each
//! node, each with `cpus` cores and, on CUDA, one GPU (`--gpus-per-node`); its batch script
//! starts them with `srun` (see the executor's `script`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::lang::Value;
use crate::stages::{Kind, StageSpec};

/// The file's name, in the project root.
pub const FILE: &str = "msnr.toml";

/// Cores of a job whose kind can use any number and whose configuration names none.
pub const DEFAULT_CPUS: u32 = 4;

/// Seconds between two state queries of a running job, unless `[slurm] poll` says.
pub const DEFAULT_POLL: f64 = 5.0;

/// The whole `msnr.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// `[executor]`.
    #[serde(default)]
    pub executor: ExecutorSection,
    /// `[slurm]`.
    #[serde(default)]
    pub slurm: SlurmConfig,
}

/// Which executor runs stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// On this machine.
    #[default]
    Local,
    /// Each stale stage as one SLURM job.
    Slurm,
}

/// `[executor]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// The executor `msnr run` uses without `--executor`.
    #[serde(default)]
    pub kind: ExecutorKind,
}

/// `[slurm]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Seconds between two state queries of a running job (default [`DEFAULT_POLL`]).
    pub poll: Option<f64>,
    /// `[slurm.default]`: every job's resources.
    #[serde(default)]
    pub default: JobConfig,
    /// `[slurm.stage.NAME]`: by stage kind or stage name (a name wins over its kind).
    #[serde(default)]
    pub stage: BTreeMap<String, JobConfig>,
}

/// One job's resources as configured; what is not given falls back as [`SlurmConfig::resources`] says.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// `--partition` (default: the cluster's default partition).
    pub partition: Option<String>,
    /// `--time`, in SLURM's formats (`30`, `4:00:00`, `2-00:00:00`; default: the partition's).
    pub time: Option<String>,
    /// `--mem` (`16G`; default: the cluster's).
    pub mem: Option<String>,
    /// `--cpus-per-task`, also the stage's thread count (a data-parallel train's: per rank).
    pub cpus: Option<u32>,
    /// `--nodes` a data-parallel train's ranks spread over (default 1; it must divide `devices`).
    pub nodes: Option<u32>,
    /// `--gpus` (default: the stage's `devices`, else 1 for a torch stage on CUDA, else none).
    pub gpus: Option<u32>,
    /// More `sbatch` arguments, as they are.
    #[serde(default)]
    pub sbatch: Vec<String>,
}

/// What a job's resources are read from: its stage's name, device and parameters.
#[derive(Clone, Copy, Debug)]
pub struct JobOf<'a> {
    /// The stage instance's name.
    pub name: &'a str,
    /// `cpu` or `cuda`.
    pub device: &'a str,
    /// Its resolved parameters (`devices`).
    pub params: &'a BTreeMap<String, Value>,
}

impl<'a> From<&'a StageSpec> for JobOf<'a> {
    fn from(spec: &'a StageSpec) -> Self {
        Self { name: &spec.name, device: &spec.device, params: &spec.params }
    }
}

/// The resources one job asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// `--time`, if any.
    pub time: Option<String>,
    /// `--mem`, if any.
    pub mem: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: u32,
    /// `--gpus` (none when 0); for several tasks, over all nodes.
    pub gpus: u32,
    /// Tasks: a data-parallel train's ranks (its `devices`), else 1.
    pub tasks: u32,
    /// `--nodes` the tasks spread over (used only for several tasks).
    pub nodes: u32,
    /// Extra arguments.
    pub sbatch: Vec<String>,
}

impl Resources {
    /// The `sbatch` arguments that ask for these resources.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![format!("--cpus-per-task={}", self.cpus)];
        let named = [("--partition", &self.partition), ("--time", &self.time), ("--mem", &self.mem)];
        for (flag, value) in named {
            if let Some(v) = value {
                args.push(format!("{flag}={v}"));
            }
        }
        if self.tasks > 1 {
            let per_node = self.tasks / self.nodes.max(1);
            args.extend([format!("--nodes={}", self.nodes), format!("--ntasks-per-node={per_node}")]);
            if self.gpus > 0 {
                args.push(format!("--gpus-per-node={}", self.gpus.div_ceil(self.nodes.max(1))));
            }
        } else if self.gpus > 0 {
            args.push(format!("--gpus={}", self.gpus));
        }
        args.extend(self.sbatch.iter().cloned());
        args
    }

    /// That the tasks split evenly over the nodes.
    ///
    /// # Errors
    /// Naming `devices` and `nodes`.
    pub fn check(&self) -> Result<(), String> {
        if self.tasks > 1 && (self.nodes == 0 || self.tasks % self.nodes != 0) {
            return Err(format!(
                "devices = {} cannot be spread evenly over nodes = {} (msnr.toml): make nodes divide devices",
                self.tasks, self.nodes
            ));
        }
        Ok(())
    }

    /// Whether the job's ranks are started by `srun` (a data-parallel train).
    #[must_use]
    pub fn ranks(&self) -> bool {
        self.tasks > 1
    }
}

impl ProjectConfig {
    /// Reads `<root>/msnr.toml`; the defaults when there is none.
    ///
    /// # Errors
    /// An unreadable or invalid file, naming it and what is wrong.
    pub fn load(root: &Path) -> Result<Self, String> {
        let path = root.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Parses the text of `path`.
    ///
    /// # Errors
    /// Invalid TOML or an unknown setting, naming the file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        if config.slurm.poll.is_some_and(|p| !(p.is_finite() && p > 0.0)) {
            return Err(format!("{}: [slurm] poll must be a positive number of seconds", path.display()));
        }
        Ok(config)
    }

    /// Where the file is (or would be) for a project rooted at `root`.
    #[must_use]
    pub fn path(root: &Path) -> PathBuf {
        root.join(FILE)
    }
}

impl SlurmConfig {
    /// The resources of the job of `spec` (a stage of kind `info`): each setting from the
    /// stage's own section, else its kind's, else `[slurm.default]`, else the built-in default.
    /// The cores are capped at what the kind can use; `sbatch` arguments add up.
    #[must_use]
    pub fn resources(&self, info: &Kind, job: &JobOf<'_>) -> Resources {
        let empty = JobConfig::default();
        let (by_name, by_kind) = (self.stage.get(job.name), self.stage.get(info.name));
        let layers = [by_name.unwrap_or(&empty), by_kind.unwrap_or(&empty), &self.default];
        let pick = |f: fn(&JobConfig) -> &Option<String>| layers.iter().find_map(|l| f(l).clone());
        let own_cpus = by_name.or(by_kind).and_then(|c| c.cpus);
        let cap = info.max_cores.and_then(|c| u32::try_from(c).ok()).unwrap_or(u32::MAX);
        let cpus = own_cpus.unwrap_or_else(|| self.default.cpus.unwrap_or(DEFAULT_CPUS).min(cap)).max(1);
        let gpus = layers.iter().find_map(|l| l.gpus).unwrap_or_else(|| default_gpus(info, job));
        let tasks = if info.torch() { devices(job).unwrap_or(1) } else { 1 };
        Resources {
            tasks,
            nodes: layers.iter().find_map(|l| l.nodes).unwrap_or(1),
            partition: pick(|l| &l.partition),
            time: pick(|l| &l.time),
            mem: pick(|l| &l.mem),
            cpus,
            gpus,
            sbatch: layers.iter().rev().flat_map(|l| l.sbatch.iter().cloned()).collect(),
        }
    }

    /// Seconds between two state queries.
    #[must_use]
    pub fn poll(&self) -> f64 {
        self.poll.unwrap_or(DEFAULT_POLL)
    }
}

/// A torch stage on CUDA asks for its `devices` GPUs (one without that parameter).
fn default_gpus(info: &Kind, job: &JobOf<'_>) -> u32 {
    if !info.torch() || job.device != "cuda" {
        return 0;
    }
    devices(job).unwrap_or(1)
}

/// The stage's `devices`, where it has that parameter.
fn devices(job: &JobOf<'_>) -> Option<u32> {
    job.params.get("devices").and_then(Value::as_int).map(|n| u32::try_from(n).unwrap_or(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::kinds;

    fn spec(name: &str, kind: &str, device: &str) -> StageSpec {
        let json = format!(
            r#"{{"name":"{name}","kind":"{kind}","params":{{}},"inputs":{{}},"out_dir":"o","work_dir":"w","seed":0,"device":"{device}"}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn config(text: &str) -> ProjectConfig {
        ProjectConfig::parse(text, Path::new("msnr.toml")).unwrap()
    }

    #[test]
    fn a_stage_section_wins_over_its_kind_then_the_defaults_then_the_built_ins() {
        let c = config(
            "[executor]\nkind = \"slurm\"\n[slurm.default]\npartition = \"cpu\"\ntime = \"1:00:00\"\ncpus = 2\nsbatch = [\"--account=lab\"]\n\
             [slurm.stage.train]\ntime = \"2-00:00:00\"\npartition = \"gpu\"\n[slurm.stage.m]\ntime = \"10\"\nsbatch = [\"--qos=long\"]\n",
        );
        assert_eq!(c.executor.kind, ExecutorKind::Slurm);
        let train = kinds::kind("train").unwrap();
        let r = c.slurm.resources(train, &(&spec("m", "train", "cuda")).into());
        assert_eq!(
            r.args(),
            ["--cpus-per-task=2", "--partition=gpu", "--time=10", "--gpus=1", "--account=lab", "--qos=long"]
        );
        let r = c.slurm.resources(train, &(&spec("other", "train", "cpu")).into());
        assert_eq!(r.args(), ["--cpus-per-task=2", "--partition=gpu", "--time=2-00:00:00", "--account=lab"]);
    }

    #[test]
    fn a_one_core_kind_asks_for_one_core_unless_its_own_section_says_more() {
        let mnist = kinds::kind("mnist").unwrap();
        let r = SlurmConfig::default().resources(mnist, &(&spec("d", "mnist", "cpu")).into());
        assert_eq!(r.args(), ["--cpus-per-task=1"]);
        let crop = kinds::kind("crop").unwrap();
        let r = SlurmConfig::default().resources(crop, &(&spec("c", "crop", "cpu")).into());
        assert_eq!(r.cpus, DEFAULT_CPUS);
        let c = config("[slurm.stage.mnist]\ncpus = 3\n");
        assert_eq!(c.slurm.resources(mnist, &(&spec("d", "mnist", "cpu")).into()).cpus, 3);
    }

    #[test]
    fn devices_become_gpus() {
        let mut s = spec("m", "train", "cuda");
        s.params.insert("devices".into(), Value::Int(8));
        let r = SlurmConfig::default().resources(kinds::kind("train").unwrap(), &(&s).into());
        assert_eq!(r.gpus, 8);
        assert_eq!(r.args(), ["--cpus-per-task=4", "--nodes=1", "--ntasks-per-node=8", "--gpus-per-node=8"]);
        let c = config("[slurm.stage.train]\nnodes = 2\ncpus = 6\n");
        let r = c.slurm.resources(kinds::kind("train").unwrap(), &(&s).into());
        assert_eq!(r.args(), ["--cpus-per-task=6", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4"]);
        assert!(r.ranks() && r.check().is_ok());
        let c = config("[slurm.stage.train]\nnodes = 3\n");
        let err = c.slurm.resources(kinds::kind("train").unwrap(), &(&s).into()).check().unwrap_err();
        assert!(err.contains("devices = 8") && err.contains("nodes = 3"), "{err}");
        let mut cpu = spec("m", "train", "cpu");
        cpu.params.insert("devices".into(), Value::Int(2));
        let r = SlurmConfig::default().resources(kinds::kind("train").unwrap(), &(&cpu).into());
        assert_eq!(r.args(), ["--cpus-per-task=4", "--nodes=1", "--ntasks-per-node=2"]);
        let r = c.slurm.resources(kinds::kind("mnist").unwrap(), &(&spec("d", "mnist", "cpu")).into());
        assert!(!r.ranks() && r.check().is_ok(), "nodes only spreads a data-parallel train");
    }

    #[test]
    fn typos_and_bad_values_are_refused_naming_the_file() {
        let err = ProjectConfig::parse("[slurm.default]\npartiton = \"x\"\n", Path::new("p/msnr.toml")).unwrap_err();
        assert!(err.starts_with("p/msnr.toml") && err.contains("partiton"), "{err}");
        let err = ProjectConfig::parse("[executor]\nkind = \"pbs\"\n", Path::new("msnr.toml")).unwrap_err();
        assert!(err.contains("pbs"), "{err}");
        let err = ProjectConfig::parse("[slurm]\npoll = 0\n", Path::new("msnr.toml")).unwrap_err();
        assert!(err.contains("poll"), "{err}");
        assert_eq!(ProjectConfig::load(Path::new("/nonexistent")).unwrap().executor.kind, ExecutorKind::Local);
    }
}
