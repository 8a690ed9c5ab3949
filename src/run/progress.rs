//! Progress for the stages of one run: one line per running stage on a terminal
//! (indicatif draws and redraws them), plain parseable lines
//! (`msnr: <stage>: <done>/<total> <message>`) otherwise, at most one per second per
//! stage plus the last.
//!
//! A terminal line never wraps: [`render`] fits it into the terminal's width, eliding
//! the stage name in the middle (a sweep instance keeps both ends of its name) and the
//! message at its end, and shows a bar only when the total is known and there is room.
//! The stage's message carries its one rate (`12.3 step/s`, see [`rate`]); the line adds
//! the time left, estimated from the progress seen since the stage started reporting.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stages::Reporter;

/// The width assumed when the terminal does not say.
const DEFAULT_WIDTH: usize = 80;
/// Columns of the stage name at most (longer names are elided in the middle).
const NAME_MAX: usize = 28;
/// The widest bar drawn, and the narrowest worth drawing (brackets included).
const BAR_MAX: usize = 32;
const BAR_MIN: usize = 8;
/// Columns of the message kept at least when a bar is drawn.
const MESSAGE_MIN: usize = 12;

/// The progress display of a whole run.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Lines redrawn in place when stderr is a terminal, plain lines otherwise.
    #[must_use]
    pub fn new() -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("MSNR_PLAIN").is_none();
        Self { multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    /// A reporter for one stage; on a terminal its line says `starting` until the stage
    /// reports.
    ///
    /// # Panics
    /// Never: the template is a valid constant.
    #[must_use]
    pub fn stage(&self, name: &str) -> StageProgress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::hidden());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("the template is valid"));
            bar.set_message(render(&Line { name, done: 0, total: 0, message: "starting", eta: None }, width()));
            bar
        });
        StageProgress { name: name.to_string(), bar, state: Mutex::new(State::default()) }
    }

    /// Prints a line without tearing the progress lines.
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
    state: Mutex<State>,
}

/// What a stage's display remembers between reports.
#[derive(Default)]
struct State {
    /// When the last plain line was printed.
    last_line: Option<Instant>,
    /// The first report: units done then, and when (the rate for the time left is
    /// measured from it, so a training resumed at step 30 000 is not thought fast).
    first: Option<(u64, Instant)>,
}

impl State {
    /// The time left at `done` of `total`, once a second of progress has been seen.
    #[allow(clippy::cast_precision_loss)]
    fn eta(&mut self, done: u64, total: u64) -> Option<Duration> {
        let (done0, t0) = *self.first.get_or_insert((done, Instant::now()));
        let elapsed = t0.elapsed().as_secs_f64();
        if total == 0 || done <= done0 || elapsed < 1.0 || done >= total {
            return None;
        }
        let per_sec = (done - done0) as f64 / elapsed;
        Some(Duration::from_secs_f64(((total - done) as f64 / per_sec).min(1e7)))
    }
}

impl StageProgress {
    /// Removes the line once the stage ended.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for StageProgress {
    fn progress(&self, done: u64, total: u64, message: &str) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let eta = state.eta(done, total);
        if let Some(bar) = &self.bar {
            bar.set_message(render(&Line { name: &self.name, done, total, message, eta }, width()));
            return;
        }
        let due = state.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due || (total > 0 && done >= total) {
            state.last_line = Some(Instant::now());
            crate::console::err_line(&format!("msnr: {}: {} {message}", self.name, counts(done, total)));
        }
    }

    fn log(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("msnr: {}: {line}", self.name)),
            None => crate::console::err_line(&format!("msnr: {}: {line}", self.name)),
        }
    }
}

/// One stage's progress, to be drawn as one terminal line.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// The stage instance's name.
    pub name: &'a str,
    /// Units done.
    pub done: u64,
    /// Units in all; 0 when not known (no bar, no time left).
    pub total: u64,
    /// The stage's status (loss, rate).
    pub message: &'a str,
    /// The time left, when it can be estimated.
    pub eta: Option<Duration>,
}

/// `line` as at most `width - 1` columns (the last column stays free, so a terminal never
/// wraps): `name [=====>    ] done/total message  eta 1m05s`. The counts and the time
/// left are kept whole; the name is elided in the middle, the message at its end, and the
/// bar is left out when there is no total or no room.
#[must_use]
pub fn render(line: &Line<'_>, width: usize) -> String {
    let room = width.saturating_sub(1).max(1);
    let name = elide_middle(line.name, NAME_MAX.min(room / 3).max(4));
    let counts = counts(line.done, line.total);
    let eta = line.eta.map(|d| format!("  eta {}", duration(d))).unwrap_or_default();
    let fixed = name.chars().count() + 1 + counts.chars().count() + eta.chars().count();
    let free = room.saturating_sub(fixed);
    let message_len = line.message.chars().count();
    // A bar when the total is known and it leaves the message a few columns (or all it needs).
    let bar_width = free.saturating_sub(message_len + 2).clamp(BAR_MIN, BAR_MAX);
    let with_bar = line.total > 0 && free >= bar_width + 2 + MESSAGE_MIN.min(message_len);
    let message_room = free.saturating_sub(if with_bar { bar_width + 2 } else { 1 });
    let message = elide_end(line.message, message_room);
    let bar = if with_bar { bar(line.done, line.total, bar_width) } else { None };
    let mut out = name;
    if let Some(bar) = bar {
        out.push(' ');
        out.push_str(&bar);
    }
    out.push(' ');
    out.push_str(&counts);
    if !message.is_empty() {
        out.push(' ');
        out.push_str(&message);
    }
    out.push_str(&eta);
    elide_end(&out, room)
}

/// `done/total`, or `done` alone while the total is not known.
fn counts(done: u64, total: u64) -> String {
    if total == 0 {
        done.to_string()
    } else {
        format!("{done}/{total}")
    }
}

/// A bar `[====>    ]` of `width` columns (brackets included).
fn bar(done: u64, total: u64, width: usize) -> Option<String> {
    let inner = width.checked_sub(2)?;
    let filled = usize::try_from(u128::from(done.min(total)) * inner as u128 / u128::from(total)).ok()?;
    let head = usize::from(filled < inner && done > 0);
    Some(format!("[{}{}{}]", "=".repeat(filled), ">".repeat(head), " ".repeat(inner - filled - head)))
}

/// `text` in at most `max` characters: the middle replaced by `…` when too long.
fn elide_middle(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(1);
    let (head, tail) = (keep - keep / 2, keep / 2);
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// `text` in at most `max` characters: its end replaced by `…` when too long.
fn elide_end(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A duration as `45s`, `3m05s` or `2h07m`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// A rate with sensible precision and its unit: `850 img/s`, `12.3 step/s`, `1.23 step/s`
/// (three significant digits below 100, whole numbers above).
#[must_use]
pub fn rate(per_sec: f64, unit: &str) -> String {
    let digits = if !per_sec.is_finite() || per_sec >= 100.0 {
        0
    } else if per_sec >= 10.0 {
        1
    } else {
        2
    };
    format!("{per_sec:.digits$} {unit}/s")
}

/// The width of the terminal on stderr (`COLUMNS` when it does not say; 80 without either).
#[must_use]
pub fn width() -> usize {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ only writes a `winsize` into the struct passed; fd 2 may be anything.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &raw mut size) } == 0;
    if ok && size.ws_col > 0 {
        return usize::from(size.ws_col);
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or(DEFAULT_WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(name: &'a str, done: u64, total: u64, message: &'a str, eta: Option<u64>) -> Line<'a> {
        Line { name, done, total, message, eta: eta.map(Duration::from_secs) }
    }

    #[test]
    fn a_line_fits_the_width_with_a_bar_when_there_is_room() {
        let l = line("model", 120, 500, "loss 0.0123, 12.3 step/s", Some(31));
        let text = render(&l, 80);
        assert_eq!(text, "model [======>                      ] 120/500 loss 0.0123, 12.3 step/s  eta 31s");
        assert!(text.chars().count() < 80);
    }

    #[test]
    fn long_names_and_messages_are_elided_never_wrapped() {
        let name = "m[w=min_snr{gamma=5},t=eps,schedule=cosine{steps=1000}]";
        let message = "loss 0.0123, 12.3 step/s and a long tail of words that goes on and on and on";
        for width in [20, 40, 60, 80, 120] {
            let text = render(&line(name, 12_345, 500_000, message, Some(3725)), width);
            assert!(text.chars().count() < width, "{width}: {text}");
            assert!(text.contains("12345/500000") || width < 40, "{width}: {text}");
        }
        let text = render(&line(name, 12_345, 500_000, message, Some(3725)), 80);
        assert_eq!(text, "m[w=min_snr{g…steps=1000}] [>     ] 12345/500000 loss 0.0123, 12.3 …  eta 1h02m");
    }

    #[test]
    fn no_bar_and_no_zero_total_until_the_total_is_known() {
        assert_eq!(render(&line("raw", 0, 0, "starting", None), 80), "raw 0 starting");
        assert_eq!(render(&line("raw", 512, 0, "extracting", None), 80), "raw 512 extracting");
    }

    #[test]
    fn bars_fill_with_progress() {
        assert_eq!(bar(0, 10, 12).unwrap(), "[          ]");
        assert_eq!(bar(5, 10, 12).unwrap(), "[=====>    ]");
        assert_eq!(bar(10, 10, 12).unwrap(), "[==========]");
        assert_eq!(bar(20, 10, 12).unwrap(), "[==========]", "never past the end");
    }

    #[test]
    fn rates_have_sensible_precision() {
        assert_eq!(rate(850.4, "img"), "850 img/s");
        assert_eq!(rate(12.34, "step"), "12.3 step/s");
        assert_eq!(rate(1.234, "step"), "1.23 step/s");
        assert_eq!(rate(0.0, "step"), "0.00 step/s");
    }

    #[test]
    fn durations_read_like_clocks() {
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7620)), "2h07m");
    }

    #[test]
    fn elision_keeps_both_ends_of_a_name() {
        assert_eq!(elide_middle("m[gamma=1]", 20), "m[gamma=1]");
        assert_eq!(elide_middle("abcdefghij", 5), "ab…ij");
        assert_eq!(elide_end("abcdefghij", 5), "abcd…");
        assert_eq!(elide_end("abc", 0), "");
    }
}
