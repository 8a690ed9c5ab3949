//! The executor: runs the stale stages of a pipeline in topological order,
//! independent ones in parallel, each either in process or in a worker, and
//! commits each output to the store atomically. A failed stage stops its
//! dependents; nothing is cached for it.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cache::{CacheKey, Depth, Entry, InputKey, Store, CORRUPTED};
use crate::graph::Dag;
use crate::lang::{Pipeline, Stage};
use crate::stages::{kinds, Checked, Exec, Kind, Reporter, StageError, StageResult, StageSpec};

use super::continuation;
use super::keys::{self, Keyer};
use super::progress::Progress;
use super::{interrupt, resume, worker};

/// How often the executor looks for a signal while stages run.
const POLL: Duration = Duration::from_millis(50);

/// How long stages running in this process may take to end after Ctrl-C before the run
/// gives up on them (workers are killed at once).
pub const GRACE: Duration = Duration::from_secs(2);

/// The scheduling state of one run.
struct Schedule {
    /// Per stage, how many of its inputs have not completed.
    waiting: Vec<usize>,
    /// The stages that ended, by index.
    outcomes: BTreeMap<usize, Outcome>,
    /// Stages whose inputs are complete, in start order.
    ready: Vec<usize>,
    /// Stages running now.
    running: BTreeSet<usize>,
    /// Per stage, the stages that wait for it to end, whatever its outcome, so they can
    /// continue its run ([`continuation::order`]).
    continuers: Vec<Vec<usize>>,
}

impl Schedule {
    fn new(x: &Executor<'_>) -> Self {
        let n = x.pipeline.stages.len();
        let mut waiting: Vec<usize> = (0..n).map(|i| x.dag.inputs(&x.pipeline.stages[i].name).len()).collect();
        let mut continuers = vec![Vec::new(); n];
        for (i, before) in continuation::order(x.pipeline).into_iter().enumerate() {
            if let Some(j) = before.filter(|&j| x.selected[i] && x.selected[j]) {
                continuers[j].push(i);
                waiting[i] += 1;
            }
        }
        let ready = x.dag.order().iter().copied().filter(|&i| x.selected[i] && waiting[i] == 0).collect();
        Self { waiting, outcomes: BTreeMap::new(), ready, running: BTreeSet::new(), continuers }
    }

    /// One input (or the run a stage continues) of `r` ended; readies `r` when none is left.
    fn release(&mut self, r: usize) {
        self.waiting[r] -= 1;
        if self.waiting[r] == 0 && !self.outcomes.contains_key(&r) {
            self.ready.push(r);
        }
    }
}

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
    /// Stopped by Ctrl-C (or SIGTERM), with the step of the checkpoint a re-run resumes from.
    Interrupted(Option<u64>),
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
    /// The store (each entry is built holding its lock).
    pub store: &'a Store,
    /// Key computation with the file-hash memo.
    pub keyer: &'a Keyer,
    /// Pins per stage from the lockfile.
    pub pins: BTreeMap<String, BTreeMap<String, String>>,
    /// Run stages without their pins (`msnr run --update-pins`): a download then pins what it
    /// fetches instead of refusing content that differs from the lockfile's pin.
    pub update_pins: bool,
    /// Which stages to consider (targets and their inputs).
    pub selected: Vec<bool>,
    /// How many stages may run at once.
    pub jobs: usize,
    /// Called with the outcomes so far when an interrupted run exits without waiting for
    /// in-process stages (see [`Executor::run`]); it records what completed.
    pub on_interrupt: &'a (dyn Fn(&BTreeMap<usize, Outcome>) + Sync),
}

impl Executor<'_> {
    /// Runs every selected stage that is not cached; returns each selected stage's outcome by index.
    ///
    /// After Ctrl-C (or SIGTERM) nothing new starts, the workers are killed and their stages end
    /// as [`Outcome::Interrupted`]. Stages running in this process cannot be stopped: if they
    /// have not ended [`GRACE`] after the signal, the outcomes so far (theirs as interrupted)
    /// go to [`Executor::on_interrupt`] and the process exits with 128 + the signal.
    #[must_use]
    pub fn run(&self, progress: &Progress) -> BTreeMap<usize, Outcome> {
        let mut s = Schedule::new(self);
        let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
        std::thread::scope(|scope| {
            let mut stopping: Option<Instant> = None;
            loop {
                if stopping.is_none() && interrupt::received().is_some() {
                    worker::stop_all();
                    stopping = Some(Instant::now());
                }
                while stopping.is_none() && s.running.len() < self.jobs.max(1) && !s.ready.is_empty() {
                    let i = s.ready.remove(0);
                    let tx = tx.clone();
                    let inputs = self.input_keys(i, &s.outcomes);
                    s.running.insert(i);
                    scope.spawn(move || {
                        // A panic must still report, or the loop below would wait for it forever.
                        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.execute(i, &inputs, progress)))
                            .unwrap_or_else(|e| Outcome::Failed(format!("internal error: {}", panic_text(&*e))));
                        let _ = tx.send((i, outcome));
                    });
                }
                if s.running.is_empty() {
                    break;
                }
                match rx.recv_timeout(POLL) {
                    Ok((i, outcome)) => self.finished(i, outcome, &mut s, progress),
                    Err(_) if stopping.is_some_and(|t| t.elapsed() >= GRACE) => {
                        self.abandon(std::mem::take(&mut s.outcomes), &s.running)
                    }
                    Err(_) => {}
                }
            }
        });
        s.outcomes
    }

    /// Records stage `i`'s outcome and readies (or skips) its readers.
    fn finished(&self, i: usize, outcome: Outcome, s: &mut Schedule, progress: &Progress) {
        s.running.remove(&i);
        self.announce(i, &outcome, progress);
        let ok = matches!(outcome, Outcome::Cached(_) | Outcome::Ran(..));
        s.outcomes.insert(i, outcome);
        for r in self.dag.readers(&self.pipeline.stages[i].name) {
            if !self.selected[r] {
                continue;
            }
            if ok {
                s.release(r);
            } else {
                s.waiting[r] -= 1;
                self.skip(r, &self.pipeline.stages[i].name, &mut s.outcomes, progress);
            }
        }
        for r in std::mem::take(&mut s.continuers[i]) {
            s.release(r);
        }
    }

    /// Gives up on in-process stages still running after an interrupt: hands the outcomes
    /// (those stages as interrupted) to [`Executor::on_interrupt`], then exits.
    fn abandon(&self, mut outcomes: BTreeMap<usize, Outcome>, running: &BTreeSet<usize>) -> ! {
        for &i in running {
            outcomes.insert(i, Outcome::Interrupted(None));
        }
        (self.on_interrupt)(&outcomes);
        let signal = interrupt::received().unwrap_or(libc::SIGINT);
        std::process::exit(i32::from(interrupt::exit_code(signal)))
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
            Outcome::Interrupted(_) => format!("msnr: {name}: interrupted"),
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
        if let Some(entry) = self.whole_entry(&stage.name, &digest, false, progress) {
            return Outcome::Cached(Done { key, entry, pins });
        }
        // Held until committed: another process building this key makes this one wait, then
        // use what it stored; unrelated keys build at once.
        let _building = match self.store.lock_entry(&digest, &stage.name) {
            Ok(lock) => lock,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if let Some(entry) = self.whole_entry(&stage.name, &digest, true, progress) {
            return Outcome::Cached(Done { key, entry, pins });
        }
        let started = Instant::now();
        let reporter = progress.stage(&stage.name);
        let typed = &self.checked[i].params;
        let pins = if self.update_pins { BTreeMap::new() } else { pins };
        let result = self.run_stage(stage, info, &key, (inputs, typed), pins, &reporter);
        reporter.finish();
        match result {
            Ok(done) => Outcome::Ran(done, started.elapsed()),
            Err(_) if interrupt::received().is_some() => {
                Outcome::Interrupted(resume::checkpoint_step(&self.store.work_dir(&digest)))
            }
            Err(e) if e.contains(CORRUPTED) => Outcome::Failed(self.set_aside_damaged_inputs(inputs, e, progress)),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// The stored entry of `digest` when it is whole (its files checked by size, and by hash
    /// where their mtime moved). A damaged one is not used; when `locked` (the entry's lock is
    /// held) it is moved to the quarantine, saying so, and the stage is rebuilt.
    fn whole_entry(&self, name: &str, digest: &str, locked: bool, progress: &Progress) -> Option<Entry> {
        let entry = self.store.get(digest)?;
        let damage = match entry.check(Depth::Changed) {
            Ok(damage) if damage.is_empty() => return Some(entry),
            Ok(damage) => damage.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            Err(e) => e.to_string(),
        };
        if locked {
            let aside = match self.store.quarantine(digest) {
                Ok(path) => format!("moved aside to {}", path.display()),
                Err(e) => format!("could not move it aside: {e}"),
            };
            progress.println(&format!("msnr: `{name}`: stored entry corrupted ({damage}); {aside}; rebuilding"));
        }
        None
    }

    /// After a stage failed reading a corrupted input (the readers check stored files as
    /// they read them): fully checks its inputs, moves the damaged ones aside so the next run
    /// rebuilds them, and says so in the returned message.
    fn set_aside_damaged_inputs(
        &self,
        inputs: &BTreeMap<String, (InputKey, Entry)>,
        error: String,
        progress: &Progress,
    ) -> String {
        let mut moved = Vec::new();
        for (name, (_, entry)) in inputs {
            let Ok(damage) = entry.check(Depth::Full) else { continue };
            if damage.is_empty() {
                continue;
            }
            let Ok(_lock) = self.store.lock_entry(&entry.key, name) else { continue };
            if self.store.quarantine(&entry.key).is_ok() {
                let files: Vec<String> = damage.iter().map(ToString::to_string).collect();
                progress
                    .println(&format!("msnr: `{name}`: stored entry corrupted ({}); moved aside", files.join(", ")));
                moved.push(format!("`{name}`"));
            }
        }
        if moved.is_empty() {
            error
        } else {
            format!("{error}\n(moved aside: {}; re-run to rebuild)", moved.join(", "))
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
        let name_at =
            |step| continuation::sibling(self.pipeline, stage, step).map(|j| self.pipeline.stages[j].name.clone());
        let continue_from = continuation::find(self.store, key, &name_at);
        if let Some(c) = &continue_from {
            reporter
                .log(&format!("continues `{}` (stored, {} steps) instead of starting from scratch", c.name, c.step));
        }
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
            state_dir: Some(staging.state_dir()),
            continue_from,
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
