//! Progress for the stages of one run: an indicatif bar per running stage on a
//! terminal, plain parseable lines (`msnr: <stage>: <done>/<total> <message>`)
//! otherwise, at most one per second per stage plus the last.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stages::Reporter;

/// The progress display of a whole run.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    #[must_use]
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("MSNR_PLAIN").is_none();
        Self { multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    /// A reporter for one stage.
    ///
    /// # Panics
    /// Never: the bar template is a valid constant.
    #[must_use]
    pub fn stage(&self, name: &str) -> StageProgress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        });
        StageProgress { name: name.to_string(), bar, last_line: Mutex::new(None) }
    }

    /// Prints a line without tearing the bars.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => crate::console::err_line(line),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// The progress of one stage.
pub struct StageProgress {
    name: String,
    bar: Option<ProgressBar>,
    last_line: Mutex<Option<Instant>>,
}

impl StageProgress {
    /// Removes the bar once the stage ended.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for StageProgress {
    fn progress(&self, done: u64, total: u64, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(message.to_string());
            return;
        }
        let mut last = self.last_line.lock().expect("progress lock");
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due || done >= total {
            *last = Some(Instant::now());
            crate::console::err_line(&format!("msnr: {}: {done}/{total} {message}", self.name));
        }
    }

    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {line}", self.name)),
            None => crate::console::err_line(&format!("msnr: {}: {line}", self.name)),
        }
    }
}
