//! `container-upgrader-server`: the fleet server's command line. Everything
//! it does is in the library; this file parses arguments, sets up logging
//! and maps outcomes to exit codes.

mod cli;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Every manifest this binary reads is an agent's (see `fleet::run`).
    container_upgrader::manifest::verify::key_files_are_elsewhere();
    cli::init_logging(&args.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::exit::INTERNAL);
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            // Never a panic on a closed stderr (`2>&1 | head -1`).
            let _ = writeln!(std::io::stderr(), "{failure}");
            ExitCode::from(failure.code)
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
