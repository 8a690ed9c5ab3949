//! Writing to the terminal without ever failing. `println!` and `eprintln!`
//! panic when their stream is closed (`msnr run FILE | head -2`, a closed
//! terminal), and a panic in a stage thread used to leave the run waiting
//! forever on a stage that would never report. Every line msnr prints goes
//! through here: a line that cannot be written is dropped, and the run goes on.

use std::io::Write as _;

/// Writes `text` to stdout as it is; ignores a closed or failing stdout.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// Writes `line` and a line break to stdout; ignores a closed or failing stdout.
pub fn out_line(line: &str) {
    out(&format!("{line}\n"));
}

/// Writes `text` to stderr as it is; ignores a closed or failing stderr.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes `line` and a line break to stderr; ignores a closed or failing stderr.
pub fn err_line(line: &str) {
    err(&format!("{line}\n"));
}
