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

/// Runs the test `name` of this binary alone in a child process and checks that it ran and
/// passed; `false` inside that child (run the test there). For a test that seeds libtorch's
/// process-wide generator and then draws from it (an in-process training): any other test of
/// this binary running at the same time, building a net or drawing noise, moves it between
/// the seed and the draws.
pub fn alone_in_a_child(name: &str) -> bool {
    if std::env::var_os("MSNR_TEST_ALONE").is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--test-threads=1"])
        .env("MSNR_TEST_ALONE", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    true
}
