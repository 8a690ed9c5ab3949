//! Helpers the integration tests share.

use std::sync::Mutex;

use msnr::stages::Reporter;

/// A reporter keeping the log lines (progress is dropped).
#[derive(Default)]
pub struct Lines(pub Mutex<Vec<String>>);

impl Reporter for Lines {
    fn progress(&self, _: u64, _: u64, _: &str) {}
    fn log(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

pub use msnr_torch::testing::alone_in_a_child;
