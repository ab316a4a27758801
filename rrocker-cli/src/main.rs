//! `rrocker-cli`: start, run, stop, query, stream, logs, list (`ps`) and remove rrocker
//! tasks. Thin: flags here, everything else in the `rrocker_cli` library.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use rrocker_cli::output::Shown;
use rrocker_cli::run::RUN_FAILED;
use rrocker_cli::{CliError, ConnectOptions, format, ids, limits, ps};
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rrocker_proto::v1::{
    ExecRequest, Fd, QueryRequest, RemoveRequest, SignalRequest, StartRequest, StopRequest,
    StreamRequest, WaitRequest, WatchRequest,
};

type Client = TaskServiceClient<tonic::transport::Channel>;

/// Run commands as isolated tasks on an rrockerd host, and control them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address of rrockerd, HOST:PORT; `ps` also takes a comma-separated list of daemons.
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
    Start(TaskArgs),
    /// Start a command as a task and stream it until it ends; exit with its exit code.
    #[command(
        after_help = "The exit code is the task's: 128 + N when signal N ended it, 125 when it could not\nstart. Ctrl-C stops the task (SIGTERM, then SIGKILL after the grace period) and waits\nfor its end; a second Ctrl-C detaches.\n\nExamples:\n  rrocker-cli run /bin/sh -c 'echo hello; exit 3'; echo $?    # hello, then 3\n  rrocker-cli run --max-mem 64M /bin/sh -c 'head -c 1G /dev/zero | tail'\n  rrocker-cli run -d /bin/sleep 60    # prints the id, like start\n  rrocker-cli run --rm /bin/true    # removed once it has ended\n  printf 'a\\nb\\n' | rrocker-cli run -i /bin/wc -l    # 2: stdin reaches the task"
    )]
    Run {
        /// Print the task's id and return at once (like start).
        #[arg(long, short = 'd', conflicts_with = "rm")]
        detach: bool,
        /// Remove the task (rm) once it has ended.
        #[arg(long)]
        rm: bool,
        #[command(flatten)]
        task: TaskArgs,
    },
    /// Stop tasks: SIGTERM, then SIGKILL after the grace period (several at once).
    #[command(
        after_help = "Examples:\n  rrocker-cli stop ID\n  rrocker-cli stop --grace 0 ID    # SIGKILL at once\n  rrocker-cli stop $(rrocker-cli ps -q)    # every running task you own"
    )]
    Stop {
        /// The tasks' ids, or unique prefixes of them.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Time between SIGTERM and SIGKILL, e.g. 10s or 500ms [default: the daemon's, 10s].
        #[arg(long, value_parser = format::parse_duration_ms)]
        grace: Option<u64>,
    },
    /// Attach to a running task: its output from now on, and the CLI's stdin as its stdin.
    #[command(
        after_help = "The task's stdin is written when it was started with it open (start -i, run -d -i) and\nno other client writes it; else the output alone is followed. Ctrl-P Ctrl-Q detaches,\nleaving the task running and its stdin open; Ctrl-C sends it SIGINT. The exit code is\nthe task's, once it ends.\n\nExamples:\n  ID=$(rrocker-cli start -i /bin/sh)\n  echo 'echo hi; exit 3' | rrocker-cli attach $ID; echo $?    # hi, then 3\n  rrocker-cli attach --no-stdin ID    # only its output"
    )]
    Attach {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// Only follow the output; leave the task's stdin to another client.
        #[arg(long)]
        no_stdin: bool,
    },
    /// Run a further command inside a running task.
    #[command(
        after_help = "The command runs in the task's namespaces, root (its files too), cgroups and
restrictions, counts against its limits and is killed when the task ends. The exit
code is the command's.

Examples:
  rrocker-cli exec ID /bin/ps -e
  rrocker-cli exec -it ID /bin/bash    # a shell inside the task
  echo data | rrocker-cli exec -i ID /bin/sh -c 'cat > /tmp/data'"
    )]
    Exec {
        /// Pass the CLI's stdin on to the command.
        #[arg(long, short = 'i')]
        interactive: bool,
        /// Give the command a terminal of its own (with -i, the local terminal in raw mode).
        #[arg(long, short = 't')]
        tty: bool,
        /// Working directory of the command.
        #[arg(long, short = 'w')]
        workdir: Option<OsString>,
        /// Environment entry KEY=VALUE (repeatable); none means a minimal default.
        #[arg(long = "env", short = 'e')]
        env: Vec<OsString>,
        /// The task's id, or a unique prefix of it.
        id: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Follow what happens to tasks (yours; an admin's: all): created, started, ended, removed.
    #[command(
        after_help = "One line per event, as it happens, until interrupted; with --since, the daemon's kept\nevents since then come first. Each task's events are in order.\n\nExamples:\n  rrocker-cli events\n  rrocker-cli events --since 10m\n  rrocker-cli events --since 2026-12-02T09:00:00Z\n  rrocker-cli events -o json | jq -c 'select(.event == \"ended\")'"
    )]
    Events {
        /// Replay the kept events since then first: a duration ago (30s, 10m, 2h), an
        /// RFC 3339 time in UTC or Unix seconds.
        #[arg(long, value_name = "TIME", value_parser = rrocker_cli::timestamps::parse_time)]
        since: Option<std::time::SystemTime>,
        /// Output format: a line of text, or a JSON object, per event.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Show running tasks' use, live: CPU %, memory, pids, block I/O.
    #[command(
        after_help = "CPU % is of one CPU (a task busy on two shows 200%), from the change of its CPU time\nover a second; memory is what its cgroup holds now, against its limit. On a terminal\nthe table is redrawn every second until Ctrl-C.\n\nExamples:\n  rrocker-cli stats\n  rrocker-cli stats --no-stream ID\n  rrocker-cli --identity admin1 stats    # everyone's tasks"
    )]
    Stats {
        /// The tasks' ids, or unique prefixes of them [default: every running task].
        ids: Vec<String>,
        /// Print one table and exit.
        #[arg(long)]
        no_stream: bool,
    },
    /// Wait for tasks to end; print each one's exit code.
    #[command(
        after_help = "The codes are printed in the order of the ids, once every task has ended (at once\nfor those that have); a task a signal ended prints 128 + its number. The exit code is\nthe first task's.\n\nExamples:\n  rrocker-cli wait ID\n  A=$(rrocker-cli start /bin/true); B=$(rrocker-cli start /bin/false)\n  rrocker-cli wait $A $B    # 0, then 1; exits 0"
    )]
    Wait {
        /// The tasks' ids, or unique prefixes of them.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal to tasks' commands (SIGKILL, the default, ends every process at once).
    #[command(
        after_help = "The signal is a name, with or without SIG and in any case, or a number. SIGKILL kills\nevery process of the task at once (reported as Killed, reason signalled); any other\nsignal goes to the command, which may handle it.\n\nExamples:\n  rrocker-cli kill ID    # SIGKILL\n  rrocker-cli kill -s USR1 ID\n  rrocker-cli kill -s 15 ID OTHER_ID"
    )]
    Kill {
        /// The tasks' ids, or unique prefixes of them.
        #[arg(required = true)]
        ids: Vec<String>,
        /// The signal: KILL, TERM, USR1, RTMIN+1..., SIGHUP, or a number.
        #[arg(long, short = 's', default_value = "KILL")]
        signal: String,
    },
    /// Print a task's state and exit code.
    #[command(
        after_help = "Examples:\n  rrocker-cli query ID\n  rrocker-cli query -v ID    # why it was killed, its limits and usage\n  rrocker-cli query -o json ID"
    )]
    Query {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// Also print why it was killed, its signal, limits, usage, times, pid and owner.
        #[arg(long, short = 'v')]
        verbose: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Print a task's output from the start, follow it until the task ends, then its state.
    #[command(
        after_help = "Examples:\n  rrocker-cli stream ID\n  rrocker-cli stream ID | sha256sum    # stdout only; stderr and the state go to stderr\n  rrocker-cli stream --tail 20 --stderr ID    # the last 20 lines of stderr, then follow\n  rrocker-cli stream --no-follow ID    # what it printed so far\n  rrocker-cli stream -t --since 5m ID    # each line after its time, from 5 minutes ago"
    )]
    Stream {
        /// The task's id, or a unique prefix of it.
        id: String,
        #[command(flatten)]
        descriptor: Descriptor,
        /// Start at the last N lines printed so far (0: only what comes next).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Print what the task printed so far and its current state, then return.
        #[arg(long)]
        no_follow: bool,
        #[command(flatten)]
        times: Times,
    },
    /// Print a task's output so far, docker's way (-f follows it); no state lines.
    #[command(
        after_help = "Examples:\n  rrocker-cli logs ID\n  rrocker-cli logs -f --tail 100 ID    # the last 100 lines, then follow\n  rrocker-cli logs --stderr ID\n  rrocker-cli logs -t ID    # 2026-12-02T10:00:00.123456789Z hello\n  rrocker-cli logs --since 10m --until 5m ID    # what it printed between 10 and 5 minutes ago\n  rrocker-cli logs --since 2026-12-02T10:00:00Z ID"
    )]
    Logs {
        /// The task's id, or a unique prefix of it.
        id: String,
        /// Follow the output until the task ends.
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        descriptor: Descriptor,
        /// Start at the last N lines printed so far.
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<u64>,
        #[command(flatten)]
        times: Times,
    },
    /// List running tasks (-a: every task), across every daemon RROCKER_ADDR lists.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  rrocker-cli ps\n  rrocker-cli ps -a    # finished tasks too\n  rrocker-cli --identity admin1 ps -a    # every owner's tasks\n  rrocker-cli stop $(rrocker-cli ps -q)    # ids only\n  RROCKER_ADDR=host1:50051,host2:50051 rrocker-cli ps    # several hosts\n  rrocker-cli ps -o json"
    )]
    Ps {
        /// Also finished tasks.
        #[arg(long, short = 'a')]
        all: bool,
        /// Only the tasks' ids.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Whole ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Forget finished tasks and their output (once their processes, cgroups and files are
    /// gone).
    #[command(
        after_help = "Examples:\n  rrocker-cli rm ID\n  rrocker-cli rm $(rrocker-cli ps -a -q)    # fails, in one line each, for running ones\n  rrocker-cli rm -f ID    # kills it first if it runs"
    )]
    Rm {
        /// The tasks' ids, or unique prefixes of them.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Kill running tasks first (SIGKILL at once).
        #[arg(long, short = 'f')]
        force: bool,
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

/// What to run and under which limits (`start` and `run`).
#[derive(Debug, clap::Args)]
struct TaskArgs {
    /// Working directory of the command.
    #[arg(long, short = 'w')]
    workdir: Option<OsString>,
    /// Environment entry KEY=VALUE (repeatable); none means a minimal default.
    #[arg(long = "env", short = 'e')]
    env: Vec<OsString>,
    /// Image the task's root is a view of: one imported on the daemon's host with
    /// `rrockerd image import` [default: the daemon's own].
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    limits: limits::LimitFlags,
    /// Keep the task's stdin open: `run -i` passes the CLI's stdin on to it (Ctrl-P Ctrl-Q
    /// detaches); `start -i` and `run -d -i` leave it for `attach`.
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Stop the task once it has run this long (30s, 5m, 2h): SIGTERM, the daemon's grace
    /// period, SIGKILL; it then ends Killed, reason timed out.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Give the command a terminal of its own (its output is one stream, as a terminal
    /// shows it); with -i, the local terminal is put in raw mode and its keys (Ctrl-C too)
    /// go to the task's, and its size is followed.
    #[arg(long, short = 't')]
    tty: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

impl TaskArgs {
    /// The start request; bad limits are refused before anything is sent.
    fn request(self) -> Result<StartRequest, CliError> {
        let limits =
            limits::build(&self.limits, limits::resolve_device).map_err(CliError::Usage)?;
        check_terminal(self.tty, self.interactive)?;
        Ok(StartRequest {
            argv: self.command.into_iter().map(OsString::into_vec).collect(),
            env: self.env.into_iter().map(OsString::into_vec).collect(),
            workdir: self.workdir.map(OsString::into_vec).unwrap_or_default(),
            limits,
            image: self.image.unwrap_or_default(),
            stdin: self.interactive,
            tty: self.tty,
            tty_size: self.tty.then(rrocker_cli::raw_terminal::size).flatten(),
            timeout_ms: self
                .timeout
                .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1)),
        })
    }
}

/// `-t` with `-i` reads keys from a terminal: refused (as docker does) when stdin is none.
fn check_terminal(tty: bool, interactive: bool) -> Result<(), CliError> {
    use std::io::IsTerminal;
    if tty && interactive && !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "The input device is not a TTY: -t with -i needs a terminal as stdin; drop -t to pipe into the task".into(),
        ));
    }
    Ok(())
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
    // `run` ends with its task's exit code, and with docker's 125 when it cannot start it.
    let failed = match cli.command {
        Command::Run { .. } | Command::Exec { .. } => RUN_FAILED,
        _ => 1,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Cannot start the async runtime: {error}");
            return ExitCode::from(failed);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            let red = anstyle::Style::new().fg_color(Some(anstyle::AnsiColor::Red.into()));
            anstream::eprintln!("{red}{error}{red:#}");
            ExitCode::from(failed)
        }
    }
}

/// `--stdout` or `--stderr` (`stream`, `logs`): one descriptor's output, or both.
#[derive(Debug, Clone, Copy, clap::Args)]
struct Descriptor {
    /// Only the task's stdout.
    #[arg(long, conflicts_with = "stderr")]
    stdout: bool,
    /// Only the task's stderr.
    #[arg(long)]
    stderr: bool,
}

impl Descriptor {
    /// The descriptor chosen (both when neither flag is given).
    fn fd(self) -> Fd {
        match (self.stdout, self.stderr) {
            (true, _) => Fd::Stdout,
            (_, true) => Fd::Stderr,
            _ => Fd::Unspecified,
        }
    }
}

/// `-t`, `--since`, `--until` (`stream`, `logs`): output's times.
#[derive(Debug, Clone, Copy, clap::Args)]
struct Times {
    /// Print each line after the time rrockerd read it (RFC 3339, UTC, nanoseconds).
    #[arg(long, short = 't')]
    timestamps: bool,
    /// Only output printed since then: a duration ago (30s, 10m, 2h), an RFC 3339 time in
    /// UTC (as -t prints) or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = rrocker_cli::timestamps::parse_time)]
    since: Option<std::time::SystemTime>,
    /// Only output printed until then (the same forms; a stream that follows ends then).
    #[arg(long, value_name = "TIME", value_parser = rrocker_cli::timestamps::parse_time)]
    until: Option<std::time::SystemTime>,
}

impl Times {
    /// The Stream request of `stream` and `logs`: task `task_id`'s output, `descriptor`'s,
    /// from its last `tail_lines`, between `--since` and `--until` (refused if the first is
    /// after the second).
    fn request(
        self,
        task_id: String,
        descriptor: Descriptor,
        tail_lines: Option<u64>,
        no_follow: bool,
    ) -> Result<StreamRequest, CliError> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since > until
        {
            return Err(CliError::Usage(
                "--since is after --until: no output is printed in between".into(),
            ));
        }
        let ns = rrocker_cli::timestamps::unix_ns;
        Ok(StreamRequest {
            task_id,
            fd: descriptor.fd().into(),
            tail_lines,
            no_follow,
            since_ns: self.since.map(ns),
            until_ns: self.until.map(ns),
        })
    }
}

/// Resolves `request`'s task id (a prefix, maybe) and streams the task to the terminal.
async fn stream(
    options: &ConnectOptions,
    mut request: StreamRequest,
    shown: Shown,
) -> Result<(), CliError> {
    let channel = rrocker_cli::connect_channel(options).await?;
    let mut client = rrocker_cli::task_client(channel.clone());
    request.task_id = ids::resolve(&mut client, &request.task_id).await?;
    rrocker_cli::output::stream(channel, request, shown).await
}

/// The daemons `--addr` names: one, or for `ps` a comma-separated list.
fn addresses(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|addr| !addr.is_empty()).map(str::to_owned).collect()
}

async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let options = ConnectOptions {
        addr: cli.addr.clone(),
        pki_dir: cli.pki_dir.unwrap_or_else(rrocker_certs::default_pki_dir),
        identity: cli.identity,
        cert: cli.cert,
        key: cli.key,
        ca: cli.ca,
    };
    let addrs = addresses(&cli.addr);
    if let Command::Ps { all, quiet, no_trunc, output } = cli.command {
        let json = matches!(output, OutputFormat::Json);
        return ps::ps(&options, &addrs, ps::Shown { all, quiet, no_trunc, json }).await;
    }
    let [addr] = addrs.as_slice() else {
        return Err(CliError::Usage(format!(
            "--addr (RROCKER_ADDR) names {} daemons; only ps asks several: pass one HOST:PORT",
            addrs.len()
        )));
    };
    let options = ConnectOptions { addr: addr.clone(), ..options };
    let rpc_error = |error| match error {
        CliError::Status(status) => CliError::from_status(addr, status),
        other => other,
    };
    act(&options, cli.command).await.map_err(rpc_error)
}

/// Runs one command against one daemon; RPC failures come back as [`CliError::Status`].
async fn act(options: &ConnectOptions, command: Command) -> Result<u8, CliError> {
    let connect = || rrocker_cli::connect(options);
    let status = CliError::Status;
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Start(task) => {
            let request = task.request()?;
            let started = connect().await?.start(request).await.map_err(status)?.into_inner();
            writeln!(stdout, "{}", started.task_id)?;
        }
        Command::Run { detach, rm, task } => {
            let request = task.request()?;
            drop(stdout);
            let how = rrocker_cli::run::Run { detach, remove: rm };
            let channel = rrocker_cli::connect_channel(options).await?;
            return rrocker_cli::run::run(channel, request, how).await;
        }
        Command::Stop { ids, grace } => {
            drop(stdout);
            let stop = |mut client: Client, id: String| async move {
                let request =
                    StopRequest { task_id: id.clone(), grace_ms: grace, ..Default::default() };
                client.stop(request).await.map(|_| format!("Killed task {id}"))
            };
            return ids::for_each(&connect().await?, &options.addr, &ids, stop).await;
        }
        Command::Attach { id, no_stdin } => {
            drop(stdout);
            let channel = rrocker_cli::connect_channel(options).await?;
            let id = ids::resolve(&mut rrocker_cli::task_client(channel.clone()), &id).await?;
            return rrocker_cli::attach::attach(channel, id, !no_stdin).await;
        }
        Command::Exec { interactive, tty, workdir, env, id, command } => {
            drop(stdout);
            check_terminal(tty, interactive)?;
            let channel = rrocker_cli::connect_channel(options).await?;
            let task_id = ids::resolve(&mut rrocker_cli::task_client(channel.clone()), &id).await?;
            let request = ExecRequest {
                task_id,
                argv: command.into_iter().map(OsString::into_vec).collect(),
                env: env.into_iter().map(OsString::into_vec).collect(),
                workdir: workdir.map(OsString::into_vec).unwrap_or_default(),
                tty,
                tty_size: tty.then(rrocker_cli::raw_terminal::size).flatten(),
            };
            return rrocker_cli::exec::exec(channel, request, interactive).await;
        }
        Command::Events { since, output } => {
            let since_ms = since.map(|at| rrocker_cli::timestamps::unix_ns(at) / 1_000_000);
            let mut events = connect()
                .await?
                .watch(WatchRequest { since_ms })
                .await
                .map_err(status)?
                .into_inner();
            while let Some(event) = events.message().await.map_err(status)? {
                match output {
                    OutputFormat::Text => writeln!(stdout, "{}", format::event_line(&event))?,
                    OutputFormat::Json => writeln!(stdout, "{}", format::event_json(&event))?,
                }
                stdout.flush()?;
            }
        }
        Command::Stats { ids: texts, no_stream } => {
            drop(stdout);
            let mut client = connect().await?;
            let mut ids = Vec::with_capacity(texts.len());
            for text in &texts {
                ids.push(ids::resolve(&mut client, text).await?);
            }
            return rrocker_cli::stats::stats(&mut client, &ids, !no_stream).await;
        }
        Command::Wait { ids: texts } => {
            drop(stdout);
            let first = std::sync::Mutex::new(None);
            let wait = |mut client: Client, id: String| {
                let (first, head) = (&first, texts[0].as_str());
                async move {
                    let status = client.wait(WaitRequest { task_id: id.clone() }).await?;
                    let code = rrocker_cli::run::exit_code(&status.into_inner());
                    if id.starts_with(head) {
                        *first.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(code);
                    }
                    Ok(code.to_string())
                }
            };
            let failed = ids::for_each(&connect().await?, &options.addr, &texts, wait).await?;
            let first = *first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return Ok(if failed == 0 { first.unwrap_or(0) } else { failed });
        }
        Command::Kill { ids, signal } => {
            drop(stdout);
            let kill = |mut client: Client, id: String| {
                let request = SignalRequest { task_id: id.clone(), signal: signal.clone() };
                async move { client.signal(request).await.map(|_| id) }
            };
            return ids::for_each(&connect().await?, &options.addr, &ids, kill).await;
        }
        Command::Query { id, verbose, output } => {
            let mut client = connect().await?;
            let id = ids::resolve(&mut client, &id).await?;
            let task = client.query(QueryRequest { task_id: id }).await.map_err(status)?;
            let task = task.into_inner();
            match output {
                OutputFormat::Text if verbose => {
                    write!(stdout, "{}", format::verbose_lines(&task))?
                }
                OutputFormat::Text => write!(stdout, "{}", format::state_lines(&task))?,
                OutputFormat::Json => writeln!(stdout, "{:#}", format::status_json(&task))?,
            }
        }
        Command::Stream { id, descriptor, tail, no_follow, times } => {
            drop(stdout);
            let request = times.request(id, descriptor, tail, no_follow)?;
            let shown = Shown { with_state: true, timestamps: times.timestamps };
            stream(options, request, shown).await?;
        }
        Command::Logs { id, descriptor, tail, follow, times } => {
            drop(stdout);
            let request = times.request(id, descriptor, tail, !follow)?;
            let shown = Shown { with_state: false, timestamps: times.timestamps };
            stream(options, request, shown).await?;
        }
        Command::Rm { ids, force } => {
            drop(stdout);
            let remove = |mut client: Client, id: String| async move {
                if force {
                    let kill =
                        StopRequest { task_id: id.clone(), grace_ms: Some(0), no_wait: false };
                    match client.stop(kill).await {
                        Err(status) if status.code() != tonic::Code::FailedPrecondition => {
                            return Err(status);
                        }
                        _ => {}
                    }
                }
                let request = RemoveRequest { task_id: id.clone() };
                client.remove(request).await.map(|_| format!("Removed task {id}"))
            };
            return ids::for_each(&connect().await?, &options.addr, &ids, remove).await;
        }
        // Printed by main without a connection; asked of every daemon by `ps`.
        Command::Completions { .. } | Command::Man | Command::Ps { .. } => {}
    }
    Ok(0)
}
