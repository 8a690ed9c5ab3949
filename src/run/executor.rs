//! The executor: runs the stale stages of a pipeline in topological order,
//! independent ones in parallel, each either in process or in a worker, and
//! commits each output to the store atomically. A failed stage stops its
//! dependents; nothing is cached for it.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cache::{CacheKey, Entry, InputKey, Store};
use crate::graph::Dag;
use crate::lang::{Pipeline, Stage};
use crate::stages::{kinds, Checked, Exec, Kind, Reporter, StageError, StageResult, StageSpec};

use super::keys::{self, Keyer};
use super::progress::Progress;
use super::worker;

/// How one stage ended.
#[derive(Debug)]
pub enum Outcome {
    /// Found in the store.
    Cached(Done),
    /// Ran now.
    Ran(Done, Duration),
    /// Failed with this message.
    Failed(String),
    /// Not run because an input failed or was not run.
    Skipped(String),
}

/// A stage whose output is in the store.
#[derive(Debug, Clone)]
pub struct Done {
    /// The full key, as recorded in the lockfile.
    pub key: CacheKey,
    /// The store entry.
    pub entry: Entry,
    /// Pins reported by the stage (or kept from the lockfile).
    pub pins: BTreeMap<String, String>,
}

/// What the executor needs besides the pipeline.
pub struct Executor<'a> {
    /// The checked pipeline.
    pub pipeline: &'a Pipeline,
    /// Its graph.
    pub dag: &'a Dag,
    /// Each stage's checked, typed parameters (by index), handed to its implementation.
    pub checked: &'a [Checked],
    /// The (locked) store.
    pub store: &'a Store,
    /// Key computation with the file-hash memo.
    pub keyer: &'a Keyer,
    /// Pins per stage from the lockfile.
    pub pins: BTreeMap<String, BTreeMap<String, String>>,
    /// Which stages to consider (targets and their inputs).
    pub selected: Vec<bool>,
    /// How many stages may run at once.
    pub jobs: usize,
}

impl Executor<'_> {
    /// Runs every selected stage that is not cached; returns each selected stage's outcome by index.
    ///
    #[must_use]
    pub fn run(&self, progress: &Progress) -> BTreeMap<usize, Outcome> {
        let n = self.pipeline.stages.len();
        let mut waiting: Vec<usize> = (0..n).map(|i| self.dag.inputs(&self.pipeline.stages[i].name).len()).collect();
        let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
        let mut ready: Vec<usize> =
            self.dag.order().iter().copied().filter(|&i| self.selected[i] && waiting[i] == 0).collect();
        let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
        std::thread::scope(|scope| {
            let mut running = 0;
            loop {
                while running < self.jobs.max(1) && !ready.is_empty() {
                    let i = ready.remove(0);
                    let tx = tx.clone();
                    let inputs = self.input_keys(i, &outcomes);
                    running += 1;
                    scope.spawn(move || {
                        // A panic must still report, or the loop below would wait for it forever.
                        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.execute(i, &inputs, progress)))
                            .unwrap_or_else(|e| Outcome::Failed(format!("internal error: {}", panic_text(&*e))));
                        let _ = tx.send((i, outcome));
                    });
                }
                if running == 0 {
                    break;
                }
                let (i, outcome) = rx.recv().expect("a stage thread always reports");
                running -= 1;
                self.announce(i, &outcome, progress);
                let ok = matches!(outcome, Outcome::Cached(_) | Outcome::Ran(..));
                outcomes.insert(i, outcome);
                for r in self.dag.readers(&self.pipeline.stages[i].name) {
                    if !self.selected[r] {
                        continue;
                    }
                    waiting[r] -= 1;
                    if !ok {
                        self.skip(r, &self.pipeline.stages[i].name, &mut outcomes, progress);
                    } else if waiting[r] == 0 && !outcomes.contains_key(&r) {
                        ready.push(r);
                    }
                }
            }
        });
        outcomes
    }

    /// Marks `r` and everything downstream of it as skipped.
    fn skip(&self, r: usize, failed: &str, outcomes: &mut BTreeMap<usize, Outcome>, progress: &Progress) {
        if outcomes.contains_key(&r) {
            return;
        }
        let outcome = Outcome::Skipped(format!("input `{failed}` did not complete"));
        self.announce(r, &outcome, progress);
        outcomes.insert(r, outcome);
        let name = self.pipeline.stages[r].name.clone();
        for rr in self.dag.readers(&name) {
            if self.selected[rr] {
                self.skip(rr, &name, outcomes, progress);
            }
        }
    }

    fn input_keys(&self, i: usize, outcomes: &BTreeMap<usize, Outcome>) -> BTreeMap<String, (InputKey, Entry)> {
        let mut out = BTreeMap::new();
        for j in self.dag.inputs(&self.pipeline.stages[i].name) {
            if let Some(Outcome::Cached(done) | Outcome::Ran(done, _)) = outcomes.get(&j) {
                let key = InputKey { output: done.entry.meta.output.clone() };
                out.insert(self.pipeline.stages[j].name.clone(), (key, done.entry.clone()));
            }
        }
        out
    }

    fn announce(&self, i: usize, outcome: &Outcome, progress: &Progress) {
        let name = &self.pipeline.stages[i].name;
        let line = match outcome {
            Outcome::Cached(d) => format!("msnr: {name}: cached ({})", short(&d.entry.key)),
            Outcome::Ran(d, t) => format!("msnr: {name}: done in {:.1}s ({})", t.as_secs_f64(), short(&d.entry.key)),
            Outcome::Failed(e) => format!("msnr: {name}: FAILED: {e}"),
            Outcome::Skipped(why) => format!("msnr: {name}: skipped: {why}"),
        };
        progress.println(&line);
    }

    /// Keys one stage, then finds it in the store or runs it.
    fn execute(&self, i: usize, inputs: &BTreeMap<String, (InputKey, Entry)>, progress: &Progress) -> Outcome {
        let stage = &self.pipeline.stages[i];
        let info = match kinds::implemented(&stage.kind) {
            Ok(info) => info,
            Err(why) => return Outcome::Failed(why),
        };
        let input_keys: BTreeMap<String, InputKey> =
            inputs.iter().map(|(k, (key, _))| (k.clone(), key.clone())).collect();
        let key = match self.keyer.key(stage, info, &input_keys) {
            Ok(key) => key,
            Err(e) => return Outcome::Failed(e),
        };
        let digest = key.digest();
        let pins = self.pins.get(&stage.name).cloned().unwrap_or_default();
        if let Some(entry) = self.store.get(&digest) {
            return Outcome::Cached(Done { key, entry, pins });
        }
        let started = Instant::now();
        let reporter = progress.stage(&stage.name);
        let typed = &self.checked[i].params;
        let result = self.run_stage(stage, info, &key, (inputs, typed), pins, &reporter);
        reporter.finish();
        match result {
            Ok(done) => Outcome::Ran(done, started.elapsed()),
            Err(e) => Outcome::Failed(e),
        }
    }

    fn run_stage(
        &self,
        stage: &Stage,
        info: &Kind,
        key: &CacheKey,
        (inputs, typed): (&BTreeMap<String, (InputKey, Entry)>, &serde_json::Value),
        pins: BTreeMap<String, String>,
        reporter: &dyn Reporter,
    ) -> Result<Done, String> {
        let staging = self.store.begin(key).map_err(|e| e.to_string())?;
        let spec = StageSpec {
            name: stage.name.clone(),
            kind: stage.kind.clone(),
            params: stage.params.clone(),
            inputs: inputs.iter().map(|(k, (_, entry))| (k.clone(), entry.out_dir.clone())).collect(),
            out_dir: staging.out_dir().to_path_buf(),
            work_dir: staging.work_dir().to_path_buf(),
            seed: keys::seed(stage).unwrap_or(0),
            device: key.torch.as_ref().map_or_else(|| "cpu".to_string(), |t| t.device.clone()),
            pins,
            typed: typed.clone(),
        };
        let result: Result<StageResult, StageError> = match info.exec {
            Exec::Local(run) => run(&spec, reporter),
            Exec::Worker => worker::run(&spec, reporter),
            Exec::Planned => Err(StageError::Failed(format!("stage kind `{}` is not implemented yet", stage.kind))),
        };
        let result = result.map_err(|e| e.to_string())?;
        let pins = result.pins.clone();
        let entry = staging.commit(result.metrics, result.pins).map_err(|e| e.to_string())?;
        Ok(Done { key: key.clone(), entry, pins })
    }
}

/// The message of a caught panic.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a stage thread panicked".to_string())
}

fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}
