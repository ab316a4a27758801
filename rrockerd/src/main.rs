//! `rrockerd`: parses flags and runs the daemon until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let config = rrockerd::config::Config::parse();
    rrockerd::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rrockerd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(rrockerd::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rrockerd: {error}");
            ExitCode::FAILURE
        }
    }
}
