//! `rrocker-cli`: start, stop, query, stream, list and remove rrocker tasks.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use rrocker_cli::{CliError, ConnectOptions, format, limits};
use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rrocker_proto::v1::{
    Fd, ListRequest, QueryRequest, RemoveRequest, StartRequest, StopRequest, StreamRequest,
};
use tonic::transport::Channel;

/// Run commands as isolated tasks on an rrockerd host, and control them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address of rrockerd.
    #[arg(long, env = "RROCKER_ADDR", default_value = "127.0.0.1:50051", global = true)]
    addr: String,
    /// Directory with server-ca.pem and <identity>.pem/.key
    /// [default: /etc/rrocker/pki as root, ~/.config/rrocker/pki otherwise].
    #[arg(long, env = "RROCKER_PKI_DIR", global = true)]
    pki_dir: Option<PathBuf>,
    /// Identity whose certificate to use (file name in the PKI directory).
    #[arg(long, env = "RROCKER_IDENTITY", default_value = "client1", global = true)]
    identity: String,
    /// Client certificate chain (PEM), instead of <pki-dir>/<identity>.pem.
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// Client private key (PEM), instead of <pki-dir>/<identity>.key.
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// CA that signs the daemon's certificate (PEM), instead of <pki-dir>/server-ca.pem.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// Human-readable text.
    Text,
    /// The full status as JSON.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a command as a task and print its id.
    #[command(
        after_help = "Examples:\n  rrocker-cli start /bin/sh -c 'echo hello'\n  rrocker-cli start --max-cpu 50% --max-mem 1G --max-pids 100 /bin/sleep 10\n  rrocker-cli start -w /tmp -e LANG=C.UTF-8 /bin/ls -la"
    )]
    Start {
        /// Working directory of the command.
        #[arg(long, short = 'w')]
        workdir: Option<OsString>,
        /// Environment entry KEY=VALUE (repeatable); none means a minimal default.
        #[arg(long = "env", short = 'e')]
        env: Vec<OsString>,
        #[command(flatten)]
        limits: limits::LimitFlags,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Stop a task: SIGTERM, then SIGKILL after the grace period.
    #[command(
        after_help = "Examples:\n  rrocker-cli stop ID\n  rrocker-cli stop --grace 0 ID    # SIGKILL at once"
    )]
    Stop {
        /// The task's id.
        id: String,
        /// Time between SIGTERM and SIGKILL, e.g. 10s or 500ms [default: the daemon's, 10s].
        #[arg(long, value_parser = format::parse_duration_ms)]
        grace: Option<u64>,
    },
    /// Print a task's state and exit code.
    #[command(
        after_help = "Examples:\n  rrocker-cli query ID\n  rrocker-cli query -v ID    # why it was killed, its limits and usage\n  rrocker-cli query -o json ID"
    )]
    Query {
        /// The task's id.
        id: String,
        /// Also print why it was killed, its limits and what it used.
        #[arg(long, short = 'v')]
        verbose: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Print a task's output from the start, follow it until the task ends, then its state.
    #[command(
        after_help = "Examples:\n  rrocker-cli stream ID\n  rrocker-cli stream ID | sha256sum    # stdout only; stderr and the state go to stderr"
    )]
    Stream {
        /// The task's id.
        id: String,
    },
    /// List the tasks you can see.
    #[command(
        visible_alias = "ps",
        after_help = "Examples:\n  rrocker-cli list\n  rrocker-cli --identity admin1 ps    # every owner's tasks\n  rrocker-cli list -o json"
    )]
    List {
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Forget a finished task and its output (once its processes, cgroup and files are gone).
    #[command(after_help = "Examples:\n  rrocker-cli rm ID")]
    Rm {
        /// The task's id.
        id: String,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  rrocker-cli completions bash > /etc/bash_completion.d/rrocker-cli\n  rrocker-cli completions zsh > ~/.zfunc/_rrocker-cli"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    #[command(after_help = "Examples:\n  rrocker-cli man | man -l -")]
    Man,
}

/// Completions and the manual page need no daemon: printed from the flags' definitions.
fn print_help_files(command: &Command) -> Option<std::io::Result<()>> {
    let mut cli = Cli::command();
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cli, "rrocker-cli", &mut stdout);
            Some(Ok(()))
        }
        Command::Man => Some(clap_mangen::Man::new(cli).render(&mut stdout)),
        _ => None,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(printed) = print_help_files(&cli.command) {
        return match printed {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("Cannot write to stdout: {error}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    // Bad limits are refused before anything is sent.
    let start_limits = match &cli.command {
        Command::Start { limits, .. } => {
            limits::build(limits, limits::resolve_device).map_err(CliError::Usage)?
        }
        _ => None,
    };
    let options = ConnectOptions {
        addr: cli.addr.clone(),
        pki_dir: cli.pki_dir.unwrap_or_else(rrocker_certs::default_pki_dir),
        identity: cli.identity,
        cert: cli.cert,
        key: cli.key,
        ca: cli.ca,
    };
    let mut client = rrocker_cli::connect(&options).await?;
    let rpc_error = |status| CliError::from_status(&cli.addr, status);
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Start { workdir, env, limits: _, command } => {
            let request = StartRequest {
                argv: command.into_iter().map(OsString::into_vec).collect(),
                env: env.into_iter().map(OsString::into_vec).collect(),
                workdir: workdir.map(OsString::into_vec).unwrap_or_default(),
                limits: start_limits,
            };
            let started = client.start(request).await.map_err(rpc_error)?.into_inner();
            writeln!(stdout, "{}", started.task_id)?;
        }
        Command::Stop { id, grace } => {
            let request = StopRequest { task_id: id.clone(), grace_ms: grace };
            client.stop(request).await.map_err(rpc_error)?;
            writeln!(stdout, "Killed task {id}")?;
        }
        Command::Query { id, verbose, output } => {
            let status = client.query(QueryRequest { task_id: id }).await.map_err(rpc_error)?;
            let status = status.into_inner();
            match output {
                OutputFormat::Text if verbose => {
                    write!(stdout, "{}", format::verbose_lines(&status))?;
                }
                OutputFormat::Text => write!(stdout, "{}", format::state_lines(&status))?,
                OutputFormat::Json => writeln!(stdout, "{:#}", format::status_json(&status))?,
            }
        }
        Command::Stream { id } => {
            drop(stdout);
            stream(&mut client, id).await.map_err(|error| match error {
                CliError::Status(status) => rpc_error(status),
                other => other,
            })?;
        }
        Command::List { output } => {
            let tasks = client.list(ListRequest {}).await.map_err(rpc_error)?.into_inner().tasks;
            match output {
                OutputFormat::Text => write!(stdout, "{}", format::list_table(&tasks))?,
                OutputFormat::Json => {
                    let all: Vec<_> = tasks.iter().map(format::status_json).collect();
                    writeln!(stdout, "{:#}", serde_json::Value::Array(all))?;
                }
            }
        }
        Command::Rm { id } => {
            client.remove(RemoveRequest { task_id: id.clone() }).await.map_err(rpc_error)?;
            writeln!(stdout, "Removed task {id}")?;
        }
        // Printed by main without a connection.
        Command::Completions { .. } | Command::Man => {}
    }
    Ok(())
}

/// Writes the task's stdout bytes to stdout and stderr bytes to stderr, unchanged, then the
/// final state lines on stderr.
async fn stream(client: &mut TaskServiceClient<Channel>, id: String) -> Result<(), CliError> {
    let mut events =
        client.stream(StreamRequest { task_id: id }).await.map_err(CliError::Status)?.into_inner();
    // Output goes straight to fds 1 and 2, one write per piece (std's stdout would copy it
    // into its line buffer and scan it for newlines first).
    let unbuffered =
        |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(std::fs::File::from);
    let mut stdout = unbuffered(std::io::stdout().as_fd())?;
    let mut stderr = unbuffered(std::io::stderr().as_fd())?;
    while let Some(message) = events.message().await.map_err(CliError::Status)? {
        match message.event {
            Some(Event::Output(output)) if output.fd() == Fd::Stderr => {
                stderr.write_all(&output.data)?;
            }
            Some(Event::Output(output)) => stdout.write_all(&output.data)?,
            Some(Event::Status(status)) => {
                write!(stderr, "{}", format::state_lines(&status))?;
                return Ok(());
            }
            None => {}
        }
    }
    Err(CliError::Status(tonic::Status::unavailable(
        "the stream ended before the task's final status",
    )))
}
