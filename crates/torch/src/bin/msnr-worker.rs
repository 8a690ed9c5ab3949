//! `msnr-worker SPEC.json`: runs one libtorch stage for the `msnr` front end
//! and reports on stdout with the line protocol of [`msnr::run::protocol`].

use std::process::ExitCode;

use msnr::run::protocol::{Event, StdoutReporter};
use msnr::run::worker::THREADS_VAR;
use msnr::stages::StageSpec;

/// Sets libtorch's intra-op thread count to the share of cores `msnr run` gave this worker
/// (`MSNR_THREADS`, see `msnr::run::budget`), so concurrent workers never oversubscribe.
fn set_threads() {
    let threads = std::env::var(THREADS_VAR).ok().and_then(|v| v.parse::<i32>().ok()).filter(|&n| n > 0);
    if let Some(n) = threads {
        tch::set_num_threads(n);
    }
}

fn main() -> ExitCode {
    msnr::malloc::tune();
    set_threads();
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: msnr-worker SPEC.json (started by `msnr run`)");
        return ExitCode::from(2);
    };
    let spec: StageSpec = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            StdoutReporter::send(&Event::Error(format!("cannot read stage spec {}: {e}", path.to_string_lossy())));
            return ExitCode::FAILURE;
        }
    };
    match msnr_torch::stages::run(&spec, &StdoutReporter) {
        Ok(result) => {
            StdoutReporter::send(&Event::Result(result));
            ExitCode::SUCCESS
        }
        Err(e) => {
            StdoutReporter::send(&Event::Error(e.to_string()));
            ExitCode::FAILURE
        }
    }
}
