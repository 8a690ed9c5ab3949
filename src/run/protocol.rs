//! The worker protocol. The front end writes a [`StageSpec`](crate::stages::StageSpec)
//! as JSON to a file and starts `msnr-worker <spec.json>`; the worker answers with
//! one JSON [`Event`] per line on stdout, ending with `result` or `error`. A worker
//! that exits without either (a crash, a signal, out of memory) failed its stage.

use std::io::Write as _;

use serde::{Deserialize, Serialize};

use crate::stages::{Reporter, StageResult};

/// One line from the worker.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `done` of `total` units, with a short status.
    Progress {
        /// Units finished.
        done: u64,
        /// Units in all.
        total: u64,
        /// Status text (loss, rate).
        message: String,
    },
    /// A line for the stage log.
    Log(String),
    /// The stage succeeded.
    Result(StageResult),
    /// The stage failed; the message names what is wrong.
    Error(String),
}

impl Event {
    /// The event as one protocol line (no trailing newline).
    ///
    /// # Panics
    /// Never: events always serialize.
    #[must_use]
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }

    /// Parses one protocol line; `None` for anything else (stray library output).
    #[must_use]
    pub fn parse(line: &str) -> Option<Self> {
        line.strip_prefix(PREFIX).and_then(|json| serde_json::from_str(json).ok())
    }
}

/// Marks protocol lines so that anything libtorch prints to stdout is not mistaken for one.
pub const PREFIX: &str = "@msnr ";

/// The worker side: writes events to stdout, one protocol line each, flushed at once
/// (`msnr-worker`, and `msnr worker` for the kinds that run without libtorch).
pub struct StdoutReporter;

impl StdoutReporter {
    /// Writes `event` as one line.
    pub fn send(event: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{PREFIX}{}", event.to_line());
        let _ = out.flush();
    }
}

impl Reporter for StdoutReporter {
    fn progress(&self, done: u64, total: u64, message: &str) {
        Self::send(&Event::Progress { done, total, message: message.to_string() });
    }
    fn log(&self, line: &str) {
        Self::send(&Event::Log(line.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_lines() {
        let events = [
            Event::Progress { done: 3, total: 10, message: "loss 0.1".into() },
            Event::Log("hello".into()),
            Event::Result(StageResult::default()),
            Event::Error("bad".into()),
        ];
        for e in events {
            assert_eq!(Event::parse(&format!("{PREFIX}{}", e.to_line())), Some(e));
        }
    }

    #[test]
    fn stray_lines_are_not_events() {
        assert_eq!(Event::parse("[W init.cpp] warning"), None);
        assert_eq!(Event::parse("@msnr {not json"), None);
    }
}
