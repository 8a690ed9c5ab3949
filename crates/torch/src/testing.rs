//! What this crate's tests share, unit and integration alike (not part of its interface).

/// Runs the test `name` of the running test binary alone in a child process and checks that it
/// ran and passed; `false` inside that child (run the test there). For a test that seeds
/// libtorch's process-wide generator and then draws from it (an in-process training): any
/// other test of the binary running at the same time, building a net or drawing noise, moves
/// it between the seed and the draws.
///
/// # Panics
/// When the child fails or does not run the test.
#[must_use]
pub fn alone_in_a_child(name: &str) -> bool {
    if std::env::var_os("MSNR_TEST_ALONE").is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--test-threads=1"])
        .env("MSNR_TEST_ALONE", "1")
        .output()
        .expect("the test binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    true
}
