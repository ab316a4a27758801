//! `rrocker-certs`: writes a dev PKI (CAs, server, client1, client2, admin1, rogue) into a
//! directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Generate rrocker's dev PKI.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory to write the PKI into (created 0700).
    #[arg(long, default_value = "pki")]
    out: PathBuf,
    /// Overwrite an existing PKI in that directory.
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if rrocker_certs::has_server_pki(&args.out) && !args.force {
        eprintln!("A PKI already exists in {}; pass --force to replace it.", args.out.display());
        return ExitCode::FAILURE;
    }
    match rrocker_certs::Pki::write_dev(&args.out) {
        Ok(_) => {
            println!("Wrote the dev PKI to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
