//! `rrocker-certs`: writes a dev PKI (CAs, server, client1, client2, admin1, rogue) into a
//! directory, and issues the certificates a fleet adds to it: a server certificate per host
//! and a client certificate per person or team, signed by the PKI's server or client CA.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rrocker_certs::{Authority, CertError, LeafSpec, Signer};

/// Generate rrocker's dev PKI, or issue a certificate from a PKI's CAs.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  rrocker-certs --out /etc/rrocker/pki    # the dev PKI\n  rrocker-certs server --ca-dir pki --name host1.example.net --name 10.0.0.5 --out host1\n  rrocker-certs client --ca-dir pki --org client --cn alice --out ."
)]
struct Args {
    /// Directory to write the dev PKI into (created 0700).
    #[arg(long, default_value = "pki")]
    out: PathBuf,
    /// Overwrite an existing PKI in that directory.
    #[arg(long)]
    force: bool,
    #[command(subcommand)]
    issue: Option<Issue>,
}

#[derive(Debug, Subcommand)]
enum Issue {
    /// Issue a server certificate for one host (server.pem, server.key), signed by the
    /// server CA; the host's daemon also needs the PKI's client-ca.pem.
    Server {
        /// PKI directory holding server-ca.pem and server-ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// A DNS name or IP address clients reach the host by (repeatable): what they pass
        /// to --addr.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Directory to write server.pem and server.key (and client-ca.pem) into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a client certificate (CN.pem, CN.key), signed by the client CA.
    Client {
        /// PKI directory holding client-ca.pem and client-ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The role: client (its own tasks) or admin (every task).
        #[arg(long, value_parser = ["client", "admin"])]
        org: String,
        /// The identity that owns tasks, and the files' name.
        #[arg(long)]
        cn: String,
        /// Directory to write CN.pem and CN.key into.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let done = match args.issue {
        None => dev_pki(&args.out, args.force),
        Some(Issue::Server { ca_dir, names, out }) => {
            issue(&ca_dir, Signer::ServerCa, &LeafSpec::server_for(&names), &out, "server")
                .and_then(|()| copy_client_ca(&ca_dir, &out))
        }
        Some(Issue::Client { ca_dir, org, cn, out }) => {
            issue(&ca_dir, Signer::ClientCa, &LeafSpec::client(&org, &cn), &out, &cn)
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn dev_pki(out: &std::path::Path, force: bool) -> Result<(), String> {
    if rrocker_certs::has_server_pki(out) && !force {
        return Err(format!(
            "A PKI already exists in {}; pass --force to replace it.",
            out.display()
        ));
    }
    rrocker_certs::Pki::write_dev(out).map_err(|error| error.to_string())?;
    println!("Wrote the dev PKI to {}", out.display());
    Ok(())
}

fn issue(
    ca_dir: &std::path::Path,
    signer: Signer,
    spec: &LeafSpec,
    out: &std::path::Path,
    name: &str,
) -> Result<(), String> {
    let issued = Authority::load(ca_dir, signer)
        .and_then(|authority| authority.issue(spec))
        .map_err(|error| error.to_string())?;
    issued.write(out, name).map_err(|error| error.to_string())?;
    println!("Wrote {}", out.join(format!("{name}.pem")).display());
    Ok(())
}

/// A host's daemon verifies clients against the client CA: it goes with the server's files.
fn copy_client_ca(ca_dir: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let (from, to) = (ca_dir.join("client-ca.pem"), out.join("client-ca.pem"));
    if from == to {
        return Ok(());
    }
    std::fs::copy(&from, &to)
        .map(drop)
        .map_err(|source| CertError::Write { path: to, source }.to_string())
}
