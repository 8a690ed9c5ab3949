//! `msnr`: the front end. Parses, checks, plans and runs pipelines; never loads
//! libtorch (torch stages run in `msnr-worker`).

fn main() -> std::process::ExitCode {
    msnr::malloc::tune();
    msnr::cli::main()
}
