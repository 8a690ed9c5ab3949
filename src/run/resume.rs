//! Where a re-run of a torch stage resumes: the step of the last checkpoint
//! the worker left in the stage's work folder. The train stage (msnr-torch's
//! `stages/train/checkpoint.rs`) writes `ckpt/state.json` with its `step`,
//! keeping the previous checkpoint as `ckpt.old/` while it swaps in a new one,
//! and resumes from the first of the two that reads back whole.

use std::path::Path;

/// The step a re-run resumes from, if the work folder holds a checkpoint.
#[must_use]
pub fn checkpoint_step(work_dir: &Path) -> Option<u64> {
    ["ckpt", "ckpt.old"].iter().find_map(|dir| step_in(&work_dir.join(dir).join("state.json")))
}

fn step_in(state: &Path) -> Option<u64> {
    let bytes = std::fs::read(state).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("step")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_current_checkpoint_then_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(checkpoint_step(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("ckpt.old")).unwrap();
        std::fs::write(dir.path().join("ckpt.old/state.json"), br#"{"step":20,"log":{}}"#).unwrap();
        assert_eq!(checkpoint_step(dir.path()), Some(20));
        std::fs::create_dir_all(dir.path().join("ckpt")).unwrap();
        std::fs::write(dir.path().join("ckpt/state.json"), b"{\"step\":").unwrap();
        assert_eq!(checkpoint_step(dir.path()), Some(20), "a torn state falls back");
        std::fs::write(dir.path().join("ckpt/state.json"), br#"{"step":30}"#).unwrap();
        assert_eq!(checkpoint_step(dir.path()), Some(30));
    }
}
