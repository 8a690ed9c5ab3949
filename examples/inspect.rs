//! Using msnr as a library: load and check a pipeline, build its graph, and
//! print each stage in run order with its inputs and resolved parameters.
//!
//! `cargo run --release --example inspect -- pipelines/hello.msnr [--set gamma=1]`

use std::path::PathBuf;
use std::process::ExitCode;

use msnr::graph::Dag;
use msnr::lang;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next().map(PathBuf::from) else {
        eprintln!("usage: inspect FILE.msnr [--set name=value]...");
        return ExitCode::from(2);
    };
    let overrides: Vec<(String, String)> = args
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|pair| pair.get(1)?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let checked = lang::load(&file, &overrides).and_then(|p| Dag::build(&p).map(|dag| (p, dag)));
    let (pipeline, dag) = match checked {
        Ok(ok) => ok,
        Err(diagnostics) => {
            eprint!("{}", diagnostics.render_plain());
            return ExitCode::FAILURE;
        }
    };
    for &i in dag.order() {
        let stage = &pipeline.stages[i];
        println!("{} = {}  (reads: {})", stage.name, stage.kind, stage.inputs().join(", "));
        for (name, value) in &stage.params {
            println!("    {name} = {value}");
        }
    }
    ExitCode::SUCCESS
}
