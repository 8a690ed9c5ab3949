//! `msnr verify`: re-runs every stage from scratch in a throwaway store and
//! compares each output's content hash with the lockfile. This is the check a
//! reader runs on a paper's committed pipeline and lockfile; the project's own
//! store and lockfile are left untouched.

use std::collections::BTreeMap;
use std::path::Path;

use super::inspect::table;
use super::run::{execute, refuse_unimplemented, select, Options};
use super::Failure;
use crate::cache::{Depth, Store};
use crate::run::executor::Outcome;
use crate::run::interrupt;
use crate::run::keys::Keyer;
use crate::run::project::Project;

/// Re-runs the pipeline (or the `only` stages and their inputs) and compares outputs with the lockfile.
pub(super) fn verify(file: &Path, set: &[(String, String)], only: &[String], options: Options) -> Result<(), Failure> {
    let project = Project::open(file, set)?;
    if project.lockfile.stages.is_empty() {
        return Err(Failure::Message(format!(
            "{}: nothing to verify yet: run the pipeline first",
            project.lock_path.display()
        )));
    }
    let selected = select(&project, only)?;
    refuse_unimplemented(&project, &selected)?;
    let message = |e: &dyn std::fmt::Display| Failure::Message(format!("scratch store: {e}"));
    let scratch =
        tempfile::Builder::new().prefix("verify-").tempdir_in(project.store()?.root()).map_err(|e| message(&e))?;
    let store = Store::open(scratch.path()).map_err(|e| message(&e))?;
    let _lock = store.lock().map_err(|e| message(&e))?;
    let keyer = Keyer::new(store.memo().map_err(|e| message(&e))?);
    let on_interrupt = |_: &BTreeMap<usize, Outcome>| {
        let _ = std::fs::remove_dir_all(scratch.path());
    };
    let outcomes = execute(&project, &store, &keyer, selected, options, &on_interrupt)?;
    if let Some(signal) = interrupt::received() {
        return Err(Failure::Interrupted(signal));
    }
    compare(&project, &project.store()?, &outcomes)
}

/// The damaged files of the project's stored entry `key` (fully re-hashed), if it has any.
fn stored_damage(store: &Store, key: &str) -> Option<String> {
    let damage = store.get(key)?.check(Depth::Full).ok()?;
    (!damage.is_empty()).then(|| damage.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

/// One row per stage: whether its key is the lockfile's, whether the output matches, and
/// whether the project's stored copy of it is still whole.
fn compare(project: &Project, store: &Store, outcomes: &BTreeMap<usize, Outcome>) -> Result<(), Failure> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (&i, outcome) in outcomes {
        let name = &project.pipeline.stages[i].name;
        let locked = project.lockfile.stages.get(name);
        let verdict = match (outcome, locked) {
            (Outcome::Cached(done) | Outcome::Ran(done, _), Some(lock)) if done.entry.key != lock.key => {
                let changes: Vec<String> = lock.key_fields.diff(&done.key).iter().map(ToString::to_string).collect();
                format!("DIFFERENT KEY (pipeline or environment changed: {})", changes.join("; "))
            }
            (Outcome::Cached(done) | Outcome::Ran(done, _), Some(lock)) if done.entry.meta.output == lock.output => {
                stored_damage(store, &lock.key).map_or_else(
                    || "reproduced".to_string(),
                    |damage| format!("CORRUPTED IN THE PROJECT'S STORE ({damage}); `msnr run` rebuilds it"),
                )
            }
            (Outcome::Cached(_) | Outcome::Ran(..), Some(lock)) => {
                format!("OUTPUT DIFFERS from {}", &lock.output[..12])
            }
            (Outcome::Cached(_) | Outcome::Ran(..), None) => "not in the lockfile".to_string(),
            (Outcome::Failed(e), _) => format!("FAILED: {e}"),
            (Outcome::Skipped(why), _) => format!("skipped: {why}"),
            (Outcome::Interrupted(_), _) => "interrupted".to_string(),
        };
        if verdict != "reproduced" {
            bad.push(name.clone());
        }
        rows.push([name.clone(), verdict]);
    }
    crate::console::out(&table(&["STAGE", "VERIFY"], &rows));
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Failure::Message(format!("not reproduced: {}", bad.join(", "))))
    }
}
