//! `rrockerd`: parses flags and runs the daemon until SIGTERM or SIGINT; started as
//! `rrocker-init`, it is a task's init instead.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The engine starts every task's init as this very binary, named rrocker-init.
    if std::env::args_os().next().is_some_and(|arg0| arg0 == rrockerd::init::ARGV0) {
        rrockerd::init::main();
    }
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
