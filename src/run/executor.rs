//! The executor: runs the stale stages of a pipeline in topological order,
//! independent ones in parallel, each in process, in a worker or as a SLURM job (its
//! [`Launcher`] decides), and commits each output to the store atomically. A failed
//! stage stops its dependents; nothing is cached for it.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::Scope;
use std::time::{Duration, Instant};

use crate::cache::{CacheKey, Depth, Entry, InputKey, Store, CORRUPTED};
use crate::graph::Dag;
use crate::lang::{Pipeline, Stage};
use crate::stages::{kinds, Checked, Kind, Reporter, StageResult, StageSpec};

use super::budget::{Budget, Grant, Need};
use super::continuation;
use super::keys::{self, Keyer};
use super::launcher::Launcher;
use super::progress::Progress;
use super::worker::Placement;
use super::{interrupt, resume};

/// How often the executor looks for a signal while stages run.
const POLL: Duration = Duration::from_millis(50);

/// How long the executor waits for stages being keyed before handing out cores to those
/// already keyed (stages that become ready together should share the cores).
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// Stages keyed at once at most.
const MAX_PROBES: usize = 16;

/// How long stages running in this process may take to end after Ctrl-C before the run
/// gives up on them (workers are killed at once).
pub const GRACE: Duration = Duration::from_secs(2);

/// The scheduling state of one run.
struct Schedule {
    /// Per stage, how many of its inputs have not completed.
    waiting: Vec<usize>,
    /// The stages that ended, by index.
    outcomes: BTreeMap<usize, Outcome>,
    /// Stages whose inputs are complete, in start order; their keys are not known yet.
    ready: Vec<usize>,
    /// Stages keyed and not in the store, waiting for cores, in start order.
    runnable: Vec<(usize, Box<Prepared>)>,
    /// Stages whose key is being computed (and looked up in the store), since when.
    probing: BTreeMap<usize, Instant>,
    /// Stages running now, with what they were granted.
    running: BTreeMap<usize, Grant>,
    /// The cores, GPUs and slots left.
    budget: Budget,
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
        let budget = Budget::new(x.resources.cores, x.resources.gpus.len(), x.resources.jobs);
        Self {
            waiting,
            outcomes: BTreeMap::new(),
            ready,
            runnable: Vec::new(),
            probing: BTreeMap::new(),
            running: BTreeMap::new(),
            budget,
            continuers,
        }
    }

    /// Nothing is keyed or running.
    fn idle(&self) -> bool {
        self.probing.is_empty() && self.running.is_empty()
    }

    /// Cores are handed out once every stage that became ready has been keyed (stages
    /// ready together then share them), or when keying takes long (hashing a big folder).
    fn may_grant(&self) -> bool {
        self.probing.values().all(|t| t.elapsed() >= PROBE_WAIT)
    }

    /// One input (or the run a stage continues) of `r` ended; readies `r` when none is left.
    fn release(&mut self, r: usize) {
        self.waiting[r] -= 1;
        if self.waiting[r] == 0 && !self.outcomes.contains_key(&r) {
            self.ready.push(r);
        }
    }
}

/// A stage keyed and not found whole in the store: what running it needs.
struct Prepared {
    key: CacheKey,
    inputs: BTreeMap<String, (InputKey, Entry)>,
    pins: BTreeMap<String, String>,
    need: Need,
}

/// What keying a stage found.
enum Probe {
    /// Its outcome without running: cached, or failed to key.
    Ended(Box<Outcome>),
    /// It must run.
    Stale(Box<Prepared>),
}

/// A message from a stage thread to the scheduling loop.
enum Message {
    Probed(usize, Probe),
    Ended(usize, Box<Outcome>),
}

/// The resources of a run: `--cores`, `--jobs` and the GPUs (see [`super::budget`]).
#[derive(Clone, Debug)]
pub struct Resources {
    /// Cores the running stages share.
    pub cores: usize,
    /// Stages run at once at most.
    pub jobs: usize,
    /// The GPUs stages are placed on (`CUDA_VISIBLE_DEVICES` values), one stage each.
    pub gpus: Vec<String>,
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
    /// The cores, stage slots and GPUs the stages share.
    pub resources: Resources,
    /// Where stale stages run: here, or as SLURM jobs.
    pub launcher: &'a Launcher,
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
        let (tx, rx) = mpsc::channel::<Message>();
        std::thread::scope(|scope| {
            let mut stopping: Option<Instant> = None;
            loop {
                if stopping.is_none() && interrupt::received().is_some() {
                    self.launcher.stop_all();
                    stopping = Some(Instant::now());
                }
                if stopping.is_none() {
                    self.start_probes(&mut s, scope, &tx, progress);
                    self.start_runs(&mut s, scope, &tx, progress);
                }
                if s.idle() {
                    break;
                }
                match rx.recv_timeout(POLL) {
                    Ok(Message::Probed(i, probe)) => {
                        s.probing.remove(&i);
                        match probe {
                            Probe::Ended(outcome) => self.finished(i, *outcome, &mut s, progress),
                            Probe::Stale(prepared) => s.runnable.push((i, prepared)),
                        }
                    }
                    Ok(Message::Ended(i, outcome)) => {
                        if let Some(grant) = s.running.remove(&i) {
                            s.budget.release(&grant);
                        }
                        self.finished(i, *outcome, &mut s, progress);
                    }
                    Err(_) if stopping.is_some_and(|t| t.elapsed() >= GRACE) => {
                        let busy: BTreeSet<usize> = s.running.keys().chain(s.probing.keys()).copied().collect();
                        self.abandon(std::mem::take(&mut s.outcomes), &busy)
                    }
                    Err(_) => {}
                }
            }
        });
        s.outcomes
    }

    /// Keys the ready stages, each in a thread of its own (hashing input files can take a
    /// while), at most [`MAX_PROBES`] at once.
    fn start_probes<'s>(
        &'s self,
        s: &mut Schedule,
        scope: &'s Scope<'s, '_>,
        tx: &mpsc::Sender<Message>,
        progress: &'s Progress,
    ) {
        while s.probing.len() < MAX_PROBES && !s.ready.is_empty() {
            let i = s.ready.remove(0);
            let tx = tx.clone();
            let inputs = self.input_keys(i, &s.outcomes);
            s.probing.insert(i, Instant::now());
            scope.spawn(move || {
                let failed = |e| Probe::Ended(Box::new(Outcome::Failed(e)));
                let probe = guarded(|| self.probe(i, inputs, progress), failed);
                let _ = tx.send(Message::Probed(i, probe));
            });
        }
    }

    /// Starts the runnable stages the budget has room for, each with its grant.
    fn start_runs<'s>(
        &'s self,
        s: &mut Schedule,
        scope: &'s Scope<'s, '_>,
        tx: &mpsc::Sender<Message>,
        progress: &'s Progress,
    ) {
        if s.runnable.is_empty() || !s.may_grant() {
            return;
        }
        let needs: Vec<Need> = s.runnable.iter().map(|(_, p)| p.need).collect();
        let grants = s.budget.grant(&needs);
        let started: BTreeSet<usize> = grants.iter().map(|(k, _)| *k).collect();
        let mut k = 0;
        let (go, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut s.runnable).into_iter().partition(|_| {
            k += 1;
            started.contains(&(k - 1))
        });
        s.runnable = wait;
        for ((i, prepared), (_, grant)) in go.into_iter().zip(grants) {
            let tx = tx.clone();
            let placement = self.placement(&grant);
            s.running.insert(i, grant);
            scope.spawn(move || {
                let outcome = guarded(|| self.execute(i, &prepared, &placement, progress), Outcome::Failed);
                let _ = tx.send(Message::Ended(i, Box::new(outcome)));
            });
        }
    }

    /// Where a stage with this grant runs.
    fn placement(&self, grant: &Grant) -> Placement {
        let gpus: Vec<&str> =
            grant.gpus.iter().filter_map(|&g| self.resources.gpus.get(g)).map(String::as_str).collect();
        Placement { threads: grant.threads, gpu: (!gpus.is_empty()).then(|| gpus.join(",")) }
    }

    /// Records stage `i`'s outcome and readies (or skips) its readers.
    fn finished(&self, i: usize, outcome: Outcome, s: &mut Schedule, progress: &Progress) {
        self.announce(i, &outcome, progress);
        if !matches!(outcome, Outcome::Ran(..)) {
            self.launcher.settled(&self.pipeline.stages[i].name);
        }
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
        self.launcher.settled(&self.pipeline.stages[r].name);
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

    /// Keys one stage and looks for it, whole, in the store.
    fn probe(&self, i: usize, inputs: BTreeMap<String, (InputKey, Entry)>, progress: &Progress) -> Probe {
        let ended = |outcome| Probe::Ended(Box::new(outcome));
        let stage = &self.pipeline.stages[i];
        let info = match kinds::implemented(&stage.kind) {
            Ok(info) => info,
            Err(why) => return ended(Outcome::Failed(why)),
        };
        let input_keys: BTreeMap<String, InputKey> =
            inputs.iter().map(|(k, (key, _))| (k.clone(), key.clone())).collect();
        let key = match self.keyer.key(stage, info, &input_keys) {
            Ok(key) => key,
            Err(e) => return ended(Outcome::Failed(e)),
        };
        let pins = self.pins.get(&stage.name).cloned().unwrap_or_default();
        if let Some(entry) = self.whole_entry(&stage.name, &key.digest(), false, progress) {
            return ended(Outcome::Cached(Done { key, entry, pins }));
        }
        let need = self.launcher.need(info, &key);
        Probe::Stale(Box::new(Prepared { key, inputs, pins, need }))
    }

    /// Runs a keyed stage that is not in the store, placed as its grant says: a worker with
    /// its thread count set, or this process's code inside a rayon pool of that many threads.
    fn execute(&self, i: usize, prepared: &Prepared, placement: &Placement, progress: &Progress) -> Outcome {
        let stage = &self.pipeline.stages[i];
        let info = kinds::implemented(&stage.kind).expect("probed stages are implemented");
        let (key, inputs) = (&prepared.key, &prepared.inputs);
        let digest = key.digest();
        // Held until committed: another process building this key makes this one wait, then
        // use what it stored; unrelated keys build at once.
        let _building = match self.store.lock_entry(&digest, &stage.name) {
            Ok(lock) => lock,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if let Some(entry) = self.whole_entry(&stage.name, &digest, true, progress) {
            return Outcome::Cached(Done { key: key.clone(), entry, pins: prepared.pins.clone() });
        }
        let started = Instant::now();
        let reporter = progress.stage(&stage.name);
        let typed = &self.checked[i].params;
        let pins = if self.update_pins { BTreeMap::new() } else { prepared.pins.clone() };
        let run = || self.run_stage(stage, info, key, (inputs, typed), pins, (&reporter, placement));
        let result = match rayon::ThreadPoolBuilder::new().num_threads(placement.threads.max(1)).build() {
            Ok(pool) => pool.install(run),
            Err(e) => Err(format!("cannot start {} threads: {e}", placement.threads)),
        };
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
        (reporter, placement): (&dyn Reporter, &Placement),
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
        let result: StageResult = self.launcher.run(info, &spec, reporter, placement).map_err(|e| e.to_string())?;
        let pins = result.pins.clone();
        let entry = staging.commit(result.metrics, result.pins).map_err(|e| e.to_string())?;
        Ok(Done { key: key.clone(), entry, pins })
    }
}

/// `f()`, or `failed` with the panic's message: a panic must still report, or the
/// scheduling loop would wait for it forever.
fn guarded<T>(f: impl FnOnce() -> T, failed: impl FnOnce(String) -> T) -> T {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|e| failed(format!("internal error: {}", panic_text(&*e))))
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
