//! The command line: argument parsing and one function per verb. [`main`]
//! turns every error into a message on stderr and an exit code; nothing here
//! panics on user input.

mod compare;
mod doc;
mod inspect;
mod maintain;
mod report;
mod run;
mod verify;
mod worker;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::graph::render::Format;
use crate::lang::Diagnostics;
use crate::run::project::OpenError;
use crate::run::slurm::config::ExecutorKind;

/// msnr: reproducible diffusion-training pipelines.
#[derive(Debug, Parser)]
#[command(name = "msnr", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and type-check a pipeline; report every error.
    Check(Target),
    /// Show, for each stage, whether it is cached or will run, and why.
    Plan {
        #[command(flatten)]
        target: Target,
        /// Also show the `sbatch` resources of each stage that will run as a SLURM job
        /// (`slurm`). Default: `[executor] kind` in the project's msnr.toml, else local.
        #[arg(long, value_enum)]
        executor: Option<ExecutorKind>,
    },
    /// Run the stale stages (all, or the named ones and their inputs).
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// Accept the current content of downloads whose SHA-256 no longer matches the
        /// lockfile's pin (a file changed upstream on purpose) and pin the new hash.
        #[arg(long)]
        update_pins: bool,
        /// Then write the HTML report (as `msnr report`: `NAME.report.html` beside the
        /// pipeline), also when a stage failed, showing what completed.
        #[arg(long)]
        report: bool,
        /// Where stale stages run: `local` (this machine), or `slurm` (each stage as one
        /// `sbatch` job; the store must be on a filesystem the nodes share). Default:
        /// `[executor] kind` in the project's msnr.toml, else local.
        #[arg(long, value_enum)]
        executor: Option<ExecutorKind>,
    },
    /// Print the stage graph as Graphviz dot or Mermaid.
    Graph {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: Format,
    },
    /// Re-run every stage from scratch in a throwaway store and compare each
    /// output with the lockfile (the project's store and lockfile are untouched).
    Verify(RunArgs),
    /// Show each stage's cache state, output folder and recorded metrics (`--check`: re-hash
    /// every stored file to find corrupted entries).
    ///
    /// The state checks that each stored file exists with its size; with `--check` every
    /// file of every entry the lockfile refers to is re-hashed, each damaged one is named,
    /// and the command fails if any is (`msnr run` moves such an entry aside and rebuilds it).
    Status {
        #[command(flatten)]
        target: Target,
        /// Re-hash every stored file against the hashes recorded when it was stored.
        #[arg(long)]
        check: bool,
    },
    /// Table of the recorded metrics of every stage (sweep instances side by side), and
    /// the steps each run needs to reach a value.
    Compare {
        #[command(flatten)]
        target: Target,
        /// Steps each metric-versus-steps series needs to reach a value: `METRIC=VALUE`, or
        /// `METRIC=baseline` for the final value of the baseline series (see --baseline).
        #[arg(long, value_name = "METRIC=VALUE")]
        reach: Option<String>,
        /// The baseline series for `--reach METRIC=baseline`: a sweep binding, `NAME=VALUE`
        /// (default `weighting=constant`).
        #[arg(long, value_name = "NAME=VALUE")]
        baseline: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: compare::Format,
        /// Show metrics measured on different numbers of images or feature networks side by
        /// side anyway.
        #[arg(long)]
        mixed: bool,
    },
    /// Remove store entries no lockfile of this project refers to.
    Gc {
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite pipeline files in canonical format.
    Fmt {
        /// Files to format.
        files: Vec<PathBuf>,
        /// Fail instead of writing when a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Print the reference of the built-in stage kinds and types (or of one).
    Doc {
        /// A stage kind or type name.
        name: Option<String>,
        /// The whole reference as Markdown (README.md's stage reference).
        #[arg(long, conflicts_with = "name")]
        markdown: bool,
    },
    /// Runs one stage of a kind that needs no libtorch from its spec file, reporting with
    /// the worker protocol (what a SLURM job of `msnr run --executor slurm` runs).
    #[command(hide = true)]
    Worker {
        /// The stage spec (JSON) the run wrote.
        spec: PathBuf,
    },
    /// Draw the recorded runs (loss, MSE per timestep, metrics against steps, sample grids) as PNG and SVG.
    Plot {
        #[command(flatten)]
        target: Target,
        /// Output folder (default: beside the pipeline, `NAME.plots/`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write one static HTML page about the pipeline (default: `NAME.report.html` beside it).
    Report {
        #[command(flatten)]
        target: Target,
        /// Output file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A pipeline file and parameter overrides.
#[derive(Debug, Args)]
struct Target {
    /// The `.msnr` pipeline.
    file: PathBuf,
    /// Override a `param`: `--set gamma=10` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_override)]
    set: Vec<(String, String)>,
}

/// Arguments of `msnr run`.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Only these stages (and what they read).
    #[arg(long = "only", value_name = "STAGE")]
    only: Vec<String>,
    /// CPU cores the running stages share (default: the cores available to msnr). Stages
    /// ready together split the free cores (data stages as rayon threads, CUDA stages as
    /// intra-op threads); a torch stage on CPU runs alone with all of them, so its results
    /// never depend on what else runs.
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    cores: Option<u64>,
    /// Stages run at once at most (default: as many as the cores allow, one core each at
    /// least; a torch stage on CUDA also needs a GPU of its own).
    #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
}

impl RunArgs {
    /// The run options these arguments give (no `--update-pins`).
    fn options(&self) -> run::Options {
        let size = |n: Option<u64>| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        run::Options { cores: size(self.cores), jobs: size(self.jobs), update_pins: false, executor: None }
    }
}

fn parse_override(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// Pipeline errors, rendered against their files.
    Diagnostics(Diagnostics),
    /// Anything else, already phrased.
    Message(String),
    /// Stopped by this signal (Ctrl-C); what happened was said already.
    Interrupted(i32),
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Invalid(d) => Self::Diagnostics(d),
            OpenError::Other(m) => Self::Message(m),
        }
    }
}

impl From<Diagnostics> for Failure {
    fn from(d: Diagnostics) -> Self {
        Self::Diagnostics(d)
    }
}

/// Parses the arguments, runs the verb, reports any failure.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Diagnostics(d)) => {
            crate::console::err(&render(&d));
            ExitCode::FAILURE
        }
        Err(Failure::Message(m)) => {
            crate::console::err_line(&format!("error: {m}"));
            ExitCode::FAILURE
        }
        Err(Failure::Interrupted(signal)) => ExitCode::from(crate::run::interrupt::exit_code(signal)),
    }
}

fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Check(t) => inspect::check(&t.file, &t.set),
        Command::Plan { target: t, executor } => inspect::plan(&t.file, &t.set, executor),
        Command::Run { args: a, update_pins, report: then_report, executor } => {
            let options = run::Options { update_pins, executor, ..a.options() };
            let ran = run::run(&a.target.file, &a.target.set, &a.only, options);
            if !then_report || matches!(ran, Err(Failure::Diagnostics(_) | Failure::Interrupted(_))) {
                return ran;
            }
            match (ran, report::report(&a.target.file, &a.target.set, None)) {
                (Err(run_failed), Err(Failure::Message(m))) => {
                    crate::console::err_line(&format!("msnr: no report: {m}"));
                    Err(run_failed)
                }
                (ran, written) => ran.and(written),
            }
        }
        Command::Verify(a) => verify::verify(&a.target.file, &a.target.set, &a.only, a.options()),
        Command::Graph { target, format } => inspect::graph(&target.file, &target.set, format),
        Command::Status { target: t, check } => inspect::status(&t.file, &t.set, check),
        Command::Compare { target, reach, baseline, format, mixed } => {
            let opts = compare::Options { reach: reach.as_deref(), baseline: baseline.as_deref(), format, mixed };
            compare::compare(&target.file, &target.set, &opts)
        }
        Command::Gc { dry_run } => maintain::gc(dry_run),
        Command::Fmt { files, check } => maintain::fmt(&files, check),
        Command::Doc { name, markdown } => maintain::doc(name.as_deref(), markdown),
        Command::Plot { target, out } => report::plot(&target.file, &target.set, out.as_deref()),
        Command::Report { target, out } => report::report(&target.file, &target.set, out.as_deref()),
        Command::Worker { spec } => worker::worker(&spec),
    }
}

/// Diagnostics in colour on a terminal, plain otherwise.
fn render(d: &Diagnostics) -> String {
    if !std::io::stderr().is_terminal() {
        return d.render_plain();
    }
    let handler = miette::GraphicalReportHandler::new();
    let mut out = String::new();
    for diag in &d.0 {
        let _ = handler.render_report(&mut out, diag);
    }
    out
}
