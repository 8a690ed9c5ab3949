//! The verbs that change files: gc and fmt; and doc.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::cache::{GcReport, Store, WORK_GRACE};
use crate::lang;
use crate::run::{project, roots};

/// `msnr gc`: removes store entries that no lockfile refers to (registered by a run, or
/// any `*.msnr.lock` under the project root), naming the lockfiles it read; and
/// forgets the remembered hashes of files that no longer exist. It waits for running runs
/// (what they built is referred to once their lockfile is written); keys another process
/// is building are left alone, and so are work folders changed within [`WORK_GRACE`] (the
/// checkpoint of an interrupted `train` that a re-run resumes from).
pub(super) fn gc(dry_run: bool) -> Result<(), Failure> {
    let root = project::project_root(&PathBuf::from("gc.msnr"));
    let store = Store::open(&root).map_err(|e| Failure::Message(e.to_string()))?;
    let _no_runs = store.no_runs().map_err(|e| Failure::Message(e.to_string()))?;
    let _lock = store.lock().map_err(|e| Failure::Message(e.to_string()))?;
    let (keep, lockfiles) = roots::live_keys(&root).map_err(Failure::Message)?;
    for path in &lockfiles {
        let shown = path.strip_prefix(&root).unwrap_or(path);
        crate::console::out_line(&format!("keeping what {} refers to", shown.display()));
    }
    let report = store.gc(&keep, dry_run).map_err(|e| Failure::Message(e.to_string()))?;
    if !dry_run {
        let mut memo = store.memo().map_err(|e| Failure::Message(e.to_string()))?;
        memo.prune_missing();
        memo.save().map_err(|e| Failure::Message(e.to_string()))?;
    }
    say_kept(&report);
    for (key, bytes) in &report.removed {
        crate::console::out_line(&format!(
            "{} {key} ({})",
            if dry_run { "would remove" } else { "removed" },
            human(*bytes)
        ));
    }
    crate::console::out_line(&format!(
        "{} {} in {} entries",
        if dry_run { "would free" } else { "freed" },
        human(report.freed),
        report.removed.len()
    ));
    Ok(())
}

/// Names what gc left although nothing refers to it.
fn say_kept(report: &GcReport) {
    let days = WORK_GRACE.as_secs() / 86_400;
    for key in &report.recent_work {
        crate::console::out_line(&format!(
            "keeping work folder {key}: changed within {days} days (an interrupted stage resumes from it)"
        ));
    }
    for key in &report.busy {
        crate::console::out_line(&format!("keeping {key}: another msnr process is building it"));
    }
}

/// `msnr fmt`: canonical formatting, in place or as a check.
pub(super) fn fmt(files: &[PathBuf], check: bool) -> Result<(), Failure> {
    let mut unformatted = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| Failure::Message(format!("{}: {e}", file.display())))?;
        let formatted = lang::format_named(&file.display().to_string(), &text)?;
        if formatted == text {
            continue;
        }
        if check {
            unformatted.push(file.display().to_string());
        } else {
            write_atomic(file, &formatted)?;
            crate::console::out_line(&format!("formatted {}", file.display()));
        }
    }
    if unformatted.is_empty() {
        Ok(())
    } else {
        Err(Failure::Message(format!("not formatted: {}", unformatted.join(", "))))
    }
}

fn write_atomic(file: &Path, text: &str) -> Result<(), Failure> {
    let tmp = file.with_extension("msnr.fmt-tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| Failure::Message(format!("{}: {e}", file.display())))
}

/// `msnr doc`: the stdlib reference, as text or (`--markdown`) as README.md's Markdown.
pub(super) fn doc(name: Option<&str>, markdown: bool) -> Result<(), Failure> {
    if markdown {
        crate::console::out(&super::doc::markdown(lang::stdlib()));
        return Ok(());
    }
    let text = super::doc::reference(lang::stdlib(), name).map_err(Failure::Message)?;
    crate::console::out(&text);
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return format!("{value:.1} {unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.1} TiB")
}
