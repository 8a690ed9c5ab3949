//! The plan: for each stage instance, whether its output is cached, or why it
//! must run (never run, a parameter or input changed with old and new value,
//! its entry is missing from the store or damaged, an input will re-run) and whether it
//! resumes from a checkpoint an interrupted run left.

use std::collections::BTreeMap;
use std::fmt;

use crate::cache::{Depth, InputKey, KeyChange, Lockfile, Store};
use crate::lang::Pipeline;
use crate::run::keys::Keyer;
use crate::run::{continuation, resume};
use crate::stages::kinds;

use super::Dag;

/// What will happen to one stage.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// The output is in the store under this key.
    Cached {
        /// The cache key.
        key: String,
        /// The output's content hash.
        output: String,
    },
    /// The stage will run, for these reasons.
    Stale(Vec<Reason>),
    /// The stage cannot run: its kind has no implementation, or its key cannot be computed.
    Blocked(String),
}

/// Why a stage will run.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// No lockfile entry: it never ran (or the lockfile is new).
    NeverRun,
    /// Its key differs from the lockfile's: these fields changed.
    Changed(Vec<KeyChange>),
    /// Same key as the lockfile, but the store lacks the output (a fresh clone, or `gc`).
    NotInStore,
    /// An input stage will run first, so this key is not known yet.
    InputStale(String),
    /// The stored entry's files are damaged (named): `run` moves it aside and rebuilds it.
    Corrupted(String),
    /// An earlier run of this key stopped (Ctrl-C, a crash) after checkpointing this step.
    Resumes(u64),
    /// It will start from a shorter run of the same configuration: stored (with its
    /// progress), or an instance of this pipeline that runs first (`None`).
    Continues(String, Option<u64>),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverRun => f.write_str("never run"),
            Self::NotInStore => f.write_str("same key as the lockfile, output not in the store"),
            Self::InputStale(name) => write!(f, "input `{name}` will run"),
            Self::Resumes(step) => write!(f, "will resume from step {step}"),
            Self::Continues(name, Some(step)) => write!(f, "will continue `{name}` (stored) from step {step}"),
            Self::Continues(name, None) => write!(f, "will continue `{name}`, which runs first"),
            Self::Corrupted(damage) => write!(f, "stored entry corrupted ({damage}); it will be rebuilt"),
            Self::Changed(changes) => {
                let parts: Vec<String> =
                    changes.iter().map(|c| format!("{}: {} -> {}", c.what, c.old, c.new)).collect();
                f.write_str(&parts.join("; "))
            }
        }
    }
}

/// One stage of the plan.
#[derive(Clone, Debug)]
pub struct Step {
    /// Index into `Pipeline::stages`.
    pub stage: usize,
    /// What will happen to it.
    pub status: Status,
}

/// Decides, in topological order, what is cached and what must run and why, for the
/// `selected` stages (those `run` would run: a set closed under inputs). Reads the store
/// and hashes input files; changes nothing.
///
/// # Panics
/// Never: every stage is planned before it is read, in topological order.
#[must_use]
pub fn plan(pipeline: &Pipeline, dag: &Dag, selected: &[bool], run: (&Store, &Lockfile, &Keyer)) -> Vec<Step> {
    let (store, lock, keyer) = run;
    let mut status: Vec<Option<Status>> = vec![None; pipeline.stages.len()];
    let before = continuation::order(pipeline);
    let order: Vec<usize> = dag.order().iter().copied().filter(|&i| selected[i]).collect();
    for &i in &order {
        let mut s = stage_status(pipeline, dag, i, &status, store, lock, keyer);
        if let (Status::Stale(reasons), Some(j)) = (&mut s, before[i]) {
            if !reasons.iter().any(|r| matches!(r, Reason::Resumes(_) | Reason::Continues(..)))
                && !matches!(status[j], Some(Status::Cached { .. }))
            {
                reasons.push(Reason::Continues(pipeline.stages[j].name.clone(), None));
            }
        }
        status[i] = Some(s);
    }
    order.iter().map(|&i| Step { stage: i, status: status[i].take().expect("planned in order") }).collect()
}

fn stage_status(
    pipeline: &Pipeline,
    dag: &Dag,
    i: usize,
    done: &[Option<Status>],
    store: &Store,
    lock: &Lockfile,
    keyer: &Keyer,
) -> Status {
    let stage = &pipeline.stages[i];
    let info = match kinds::implemented(&stage.kind) {
        Ok(info) => info,
        Err(why) => return Status::Blocked(why),
    };
    let mut inputs = BTreeMap::new();
    let mut stale_inputs = Vec::new();
    for j in dag.inputs(&stage.name) {
        let name = &pipeline.stages[j].name;
        match &done[j] {
            Some(Status::Cached { output, .. }) => {
                inputs.insert(name.clone(), InputKey { output: output.clone() });
            }
            _ => stale_inputs.push(Reason::InputStale(name.clone())),
        }
    }
    if !stale_inputs.is_empty() {
        return Status::Stale(stale_inputs);
    }
    let key = match keyer.key(stage, info, &inputs) {
        Ok(key) => key,
        Err(e) => return Status::Blocked(e),
    };
    let digest = key.digest();
    if let Some(entry) = store.get(&digest) {
        match entry.check(Depth::Changed) {
            Ok(damage) if damage.is_empty() => {
                return Status::Cached { key: digest, output: entry.meta.output.clone() };
            }
            Ok(damage) => {
                let files: Vec<String> = damage.iter().map(ToString::to_string).collect();
                return Status::Stale(vec![Reason::Corrupted(files.join(", "))]);
            }
            Err(e) => return Status::Stale(vec![Reason::Corrupted(e.to_string())]),
        }
    }
    let name_at = |step| continuation::sibling(pipeline, stage, step).map(|j| pipeline.stages[j].name.clone());
    let resume = resume::checkpoint_step(&store.work_dir(&digest))
        .map(Reason::Resumes)
        .or_else(|| continuation::find(store, &key, &name_at).map(|c| Reason::Continues(c.name, Some(c.step))));
    let reason = match lock.stages.get(&stage.name) {
        None if resume.is_some() => return Status::Stale(resume.into_iter().collect()),
        None => Reason::NeverRun,
        Some(old) if old.key == digest => Reason::NotInStore,
        Some(old) => Reason::Changed(old.key_fields.diff(&key)),
    };
    Status::Stale(std::iter::once(reason).chain(resume).collect())
}
