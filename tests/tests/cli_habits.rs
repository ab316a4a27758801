//! The CLI habits of docker users, through the real `rrocker-cli` and daemon: `run` and its
//! exit codes and Ctrl-C, `ps` and its table, `stream`'s selections, id prefixes, colour only
//! where wanted, and several daemons at once.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Output, Stdio};

use rrocker_tests::Daemon;

fn cli(daemon: &Daemon, identity: &str, args: &[&str]) -> Output {
    daemon.cli(identity).args(args).output().expect("run rrocker-cli")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn start(daemon: &Daemon, args: &[&str]) -> String {
    let output = cli(daemon, "client1", &[&["start"], args].concat());
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_owned()
}

/// Streams `id` to its end, so that it is finished.
fn wait_for_end(daemon: &Daemon, id: &str) {
    assert!(cli(daemon, "client1", &["stream", id]).status.success());
}

/// A CLI started with piped output, and its stdout's first line once it has printed it.
fn spawned_until_line(daemon: &Daemon, args: &[&str]) -> (Child, String) {
    let mut child = daemon
        .cli("client1")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rrocker-cli");
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    reader.read_line(&mut line).expect("read a line");
    (child, line)
}

#[test]
fn run_prints_the_output_and_exits_with_the_tasks_code() {
    let daemon = Daemon::start();
    let ran = cli(&daemon, "client1", &["run", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(ran.status.code(), Some(3));
    assert_eq!((text(&ran.stdout), text(&ran.stderr)), ("out\n".into(), "err\n".into()));

    let killed = cli(&daemon, "client1", &["run", "/bin/sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(128 + 15), "128 + SIGTERM");
    assert_eq!(text(&killed.stderr), "Task state: Killed\n");

    let missing = cli(&daemon, "client1", &["run", "/bin/a_binary_that_doesnt_exist"]);
    assert_eq!(missing.status.code(), Some(125), "docker's code for a task that cannot start");
    assert_eq!(
        text(&missing.stderr),
        "Binary '/bin/a_binary_that_doesnt_exist' not found in base image.\n"
    );

    let detached = cli(&daemon, "client1", &["run", "-d", "/bin/sh", "-c", "echo later"]);
    assert!(detached.status.success());
    let id = text(&detached.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "the id alone: {id:?}");
    let streamed = cli(&daemon, "client1", &["stream", &id]);
    assert_eq!(text(&streamed.stdout), "later\n");

    // --rm removes the task once it has ended; rm -f kills a running one first.
    let removed = cli(&daemon, "client1", &["run", "--rm", "/bin/sh", "-c", "exit 5"]);
    assert_eq!(removed.status.code(), Some(5));
    let running = text(&cli(&daemon, "client1", &["run", "-d", "/bin/sleep", "100"]).stdout);
    let forced = cli(&daemon, "client1", &["rm", "-f", running.trim(), &id]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let left = text(&cli(&daemon, "client1", &["ps", "-a", "-q", "--no-trunc"]).stdout);
    assert_eq!(left.lines().count(), 2, "only the first two runs are left: {left}");
    assert!(!left.contains(running.trim()) && !left.contains(&id), "{left}");
}

#[test]
fn ctrl_c_stops_a_run_and_a_second_one_detaches_leaving_the_stop_to_the_daemon() {
    let daemon = Daemon::start();
    // A first Ctrl-C stops the task; the CLI follows it to its end.
    let (first, ready) =
        spawned_until_line(&daemon, &["run", "/bin/sh", "-c", "echo ready; exec sleep 100"]);
    assert_eq!(ready, "ready\n");
    rrocker_tests::signal(first.id(), libc::SIGINT);
    let ended = first.wait_with_output().expect("wait");
    assert_eq!(ended.status.code(), Some(128 + 15), "{}", text(&ended.stderr));
    assert!(text(&ended.stderr).starts_with("Stopping task "), "{}", text(&ended.stderr));
    assert!(text(&ended.stderr).ends_with("(Ctrl-C again to detach)\nTask state: Killed\n"));

    // SIGTERM to the CLI (a supervisor's) stops the task too.
    let (terminated, _) =
        spawned_until_line(&daemon, &["run", "/bin/sh", "-c", "echo ready; exec sleep 100"]);
    rrocker_tests::signal(terminated.id(), libc::SIGTERM);
    let ended = terminated.wait_with_output().expect("wait");
    assert_eq!(ended.status.code(), Some(128 + 15), "{}", text(&ended.stderr));

    // A task that ignores SIGTERM: the second Ctrl-C detaches, and the daemon still kills
    // it once the grace period is over, although its caller has gone.
    let script = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let (mut second, _) = spawned_until_line(&daemon, &["run", "/bin/sh", "-c", script]);
    let mut stderr = BufReader::new(second.stderr.take().expect("stderr"));
    rrocker_tests::signal(second.id(), libc::SIGINT);
    let mut stopping = String::new();
    stderr.read_line(&mut stopping).expect("read");
    let id = stopping.split_whitespace().nth(2).expect("an id").to_owned();
    rrocker_tests::signal(second.id(), libc::SIGINT);
    assert_eq!(second.wait().expect("wait").code(), Some(130));
    let mut detached = String::new();
    stderr.read_to_string(&mut detached).expect("read");
    assert_eq!(detached, format!("Detached from task {id}; rrockerd goes on stopping it\n"));
    let status = cli(&daemon, "client1", &["stream", &id]);
    assert!(text(&status.stderr).ends_with("Task state: Killed\n"), "{}", text(&status.stderr));
    let verbose = text(&cli(&daemon, "client1", &["query", "-v", &id]).stdout);
    assert!(verbose.contains("Reason: stopped\nSignal: SIGKILL\n"), "{verbose}");
}

#[test]
fn ps_shows_running_tasks_and_with_a_finished_ones_too() {
    let daemon = Daemon::start();
    let done = start(&daemon, &["/bin/true"]);
    wait_for_end(&daemon, &done);
    let running = start(&daemon, &["/bin/sleep", "100"]);
    let (short_done, short_running) = (&done[..12], &running[..12]);

    let ps = text(&cli(&daemon, "client1", &["ps"]).stdout);
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines[0], "ID             COMMAND          STATUS", "{ps}");
    assert_eq!(lines.len(), 2, "only the running task: {ps}");
    let running_line = format!("{short_running}   /bin/sleep 100   Running ");
    assert!(lines[1].starts_with(&running_line) && lines[1].ends_with('s'), "{ps}");

    // Newest first, as docker lists.
    let all = text(&cli(&daemon, "client1", &["ps", "-a"]).stdout);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3, "{all}");
    let done_line = format!("{short_done}   /bin/true        Completed (0) ");
    assert!(lines[1].starts_with(&running_line), "{all}");
    assert!(lines[2].starts_with(&done_line) && lines[2].ends_with(" ago"), "{all}");

    let quiet = text(&cli(&daemon, "client1", &["ps", "-a", "-q"]).stdout);
    assert_eq!(quiet, format!("{short_running}\n{short_done}\n"));
    let whole = text(&cli(&daemon, "client1", &["list", "-q", "--no-trunc"]).stdout);
    assert_eq!(whole, format!("{running}\n"));
    let json: serde_json::Value =
        serde_json::from_slice(&cli(&daemon, "client1", &["ps", "-a", "-o", "json"]).stdout)
            .expect("json");
    assert_eq!(json[1]["id"], done.as_str());
    assert_eq!(json[0]["state"], "running");

    // An admin sees every owner's tasks, with an OWNER column.
    let admin = text(&cli(&daemon, "admin1", &["ps"]).stdout);
    assert!(admin.starts_with("ID             COMMAND          OWNER     STATUS\n"), "{admin}");
    assert!(admin.contains(&format!("{short_running}   /bin/sleep 100   client1   Running ")));
    assert_eq!(text(&cli(&daemon, "client2", &["ps", "-a"]).stdout), "ID   COMMAND   STATUS\n");
    let _ = cli(&daemon, "client1", &["stop", "--grace", "0", &running]);
}

#[test]
fn a_killed_task_shows_its_signal_and_query_v_its_times() {
    let daemon = Daemon::start();
    let id = start(&daemon, &["/bin/sleep", "100"]);
    assert!(cli(&daemon, "client1", &["stop", &id[..8]]).status.success(), "a prefix stops it");
    let all = text(&cli(&daemon, "client1", &["ps", "-a"]).stdout);
    assert!(all.contains("   Killed (SIGTERM) "), "{all}");
    let verbose = text(&cli(&daemon, "client1", &["query", "-v", &id[..12]]).stdout);
    for line in
        ["Task state: Killed\n", "Reason: stopped\n", "Signal: SIGTERM\n", "Owner: client1\n"]
    {
        assert!(verbose.contains(line), "{line:?} missing: {verbose}");
    }
    let created = verbose.lines().find(|line| line.starts_with("Created: ")).expect("Created");
    assert!(created.ends_with('Z') && created.len() == "Created: 2026-12-01T06:00:00Z".len());
    assert!(verbose.contains("\nFinished: ") && verbose.contains(" (ran "), "{verbose}");
}

#[test]
fn colour_only_on_a_terminal_or_when_forced_and_never_with_no_color() {
    let daemon = Daemon::start();
    let id = start(&daemon, &["/bin/sleep", "100"]);
    let ps = |env: &[(&str, &str)]| {
        let mut command = daemon.cli("client1");
        command.arg("ps").env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        command.envs(env.iter().copied());
        text(&command.output().expect("ps").stdout)
    };
    assert!(!ps(&[]).contains('\u{1b}'), "a pipe gets no colour");
    // A real terminal (script(1) gives the CLI a pseudo-terminal) gets colour, unless NO_COLOR.
    let on_terminal = |no_color: bool| {
        let mut command = daemon.cli("client1");
        command.arg("ps");
        let mut line = command.get_program().to_string_lossy().into_owned();
        for arg in command.get_args() {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &line, "/dev/null"]).env("TERM", "xterm").env_remove("CLICOLOR_FORCE");
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        text(&script.output().expect("script").stdout)
    };
    assert!(on_terminal(false).contains("\u{1b}[32mRunning "), "{:?}", on_terminal(false));
    assert!(!on_terminal(true).contains('\u{1b}'), "NO_COLOR on a terminal");
    assert!(ps(&[("CLICOLOR_FORCE", "1")]).contains("\u{1b}[32mRunning "), "forced colour");
    assert!(!ps(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains('\u{1b}'), "NO_COLOR");
    let _ = cli(&daemon, "client1", &["stop", "--grace", "0", &id]);
}

#[test]
fn unique_prefixes_name_tasks_and_an_ambiguous_one_is_refused() {
    let daemon = Daemon::start();
    // 17 ids over 16 first hex digits: two share their first character.
    let ids: Vec<String> = (0..17).map(|_| start(&daemon, &["/bin/true"])).collect();
    let shared = ids
        .iter()
        .find(|id| ids.iter().filter(|other| other[..1] == id[..1]).count() > 1)
        .expect("pigeonhole");
    let prefix = &shared[..1];
    let ambiguous = cli(&daemon, "client1", &["query", prefix]);
    assert_eq!(ambiguous.status.code(), Some(1));
    let message = text(&ambiguous.stderr);
    assert!(message.starts_with(&format!("Task id prefix '{prefix}' is ambiguous: it matches ")));
    assert!(message.ends_with("; give more of the id\n") && message.lines().count() == 1);
    let unique = &ids[0][..13];
    let queried = cli(&daemon, "client1", &["query", unique]);
    assert!(queried.status.success(), "{}", text(&queried.stderr));
    // Another identity's tasks are not candidates: for client2 the prefix names nothing.
    let foreign = cli(&daemon, "client2", &["query", unique]);
    assert_eq!(text(&foreign.stderr), format!("Task '{unique}' doesn't exist\n"));
}

#[test]
fn stream_selects_a_descriptor_the_last_lines_and_what_exists_so_far() {
    let daemon = Daemon::start();
    let script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done";
    let id = start(&daemon, &["/bin/sh", "-c", script]);
    wait_for_end(&daemon, &id);
    let stream = |args: &[&str]| cli(&daemon, "client1", &[&["stream"], args, &[&id]].concat());
    let out = stream(&["--stdout"]);
    assert_eq!(text(&out.stdout), "out1\nout2\nout3\nout4\nout5\n");
    assert_eq!(text(&out.stderr), "Task state: Completed\nExit code: 0\n");
    assert_eq!(
        text(&stream(&["--stderr", "--tail", "2"]).stderr),
        "err4\nerr5\nTask state: Completed\nExit code: 0\n"
    );
    // Both descriptors: the last 3 lines as the daemon read them, whichever pipe came first.
    let tail = stream(&["--tail", "3"]);
    let (out, err) = (text(&tail.stdout), text(&tail.stderr));
    let err = err.strip_suffix("Task state: Completed\nExit code: 0\n").expect("status last");
    assert_eq!(out.lines().count() + err.lines().count(), 3, "{out:?} {err:?}");
    assert!("out1\nout2\nout3\nout4\nout5\n".ends_with(&out), "{out:?}");
    assert!("err1\nerr2\nerr3\nerr4\nerr5\n".ends_with(err), "{err:?}");

    // A running task: --no-follow prints what exists and its state now, then returns.
    let running = start(&daemon, &["/bin/sh", "-c", "echo first; exec sleep 100"]);
    let (mut follower, first) = spawned_until_line(&daemon, &["stream", &running]);
    assert_eq!(first, "first\n");
    let now = cli(&daemon, "client1", &["stream", "--no-follow", &running[..10]]);
    assert_eq!(
        (text(&now.stdout), text(&now.stderr)),
        ("first\n".into(), "Task state: Running\n".into())
    );
    let none = cli(&daemon, "client1", &["stream", "--no-follow", "--tail", "0", &running]);
    assert_eq!(text(&none.stdout), "");
    // docker's logs: what exists, no state lines; -f follows.
    let logs = cli(&daemon, "client1", &["logs", &running[..10]]);
    assert_eq!((text(&logs.stdout), text(&logs.stderr)), ("first\n".into(), String::new()));
    let (logs_follow, first_again) =
        spawned_until_line(&daemon, &["logs", "-f", "-n", "1", &running]);
    assert_eq!(first_again, "first\n");
    let _ = cli(&daemon, "client1", &["stop", "--grace", "0", &running]);
    assert!(follower.wait().expect("wait").success());
    let followed = logs_follow.wait_with_output().expect("wait");
    assert!(followed.status.success() && followed.stderr.is_empty(), "no state lines");
}

#[test]
fn ps_asks_every_daemon_rrocker_addr_lists_and_others_take_one() {
    let daemon = Daemon::start();
    let id = start(&daemon, &["/bin/sleep", "100"]);
    let addr = daemon.addr().to_string();
    // RROCKER_ADDR is the list (the harness's --addr would override it).
    let at = |list: &str, args: &[&str]| {
        let mut command = std::process::Command::new(rrocker_tests::bin_path("rrocker-cli"));
        command.env("RROCKER_ADDR", list).arg("--pki-dir").arg(daemon.pki_dir());
        command.args(args).output().expect("rrocker-cli")
    };
    let ps = |list: &str| at(list, &["ps"]);
    let both = ps(&format!("{addr},{addr}"));
    assert!(both.status.success());
    let table = text(&both.stdout);
    assert!(table.starts_with(&format!("HOST{}   ID ", " ".repeat(addr.len() - 4))), "{table}");
    assert_eq!(table.matches(&format!("{addr}   {}", &id[..12])).count(), 2, "{table}");

    let one_down = ps(&format!("{addr},127.0.0.1:1"));
    assert_eq!(one_down.status.code(), Some(1), "one daemon could not be asked");
    assert!(text(&one_down.stdout).contains(&id[..12]), "the other's tasks are shown");
    assert_eq!(
        text(&one_down.stderr),
        "Cannot talk to rrockerd at 127.0.0.1:1: connection refused (is rrockerd running there?)\n"
    );
    let many = at(&format!("{addr},{addr}"), &["stop", &id]);
    assert_eq!(
        text(&many.stderr),
        "--addr (RROCKER_ADDR) names 2 daemons; only ps asks several: pass one HOST:PORT\n"
    );
    let _ = cli(&daemon, "client1", &["stop", "--grace", "0", &id]);
}

#[test]
fn errors_are_one_sentence_that_says_what_to_do() {
    let daemon = Daemon::start();
    daemon.issue("guest", &rrocker_certs::LeafSpec::client("guests", "guest1"));
    let denied = cli(&daemon, "guest", &["ps"]);
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(
        text(&denied.stderr),
        "Permission denied for identity 'guest1': its certificate's organization 'guests' grants no access; use a certificate of the client CA with O=client or O=admin and a CN\n"
    );
    let missing = cli(&daemon, "nobody", &["ps"]);
    let path = daemon.pki_dir().join("nobody.pem");
    assert_eq!(
        text(&missing.stderr),
        format!(
            "Cannot read the client certificate at {}: No such file or directory (os error 2) (set --pki-dir/RROCKER_PKI_DIR and --identity, or --cert/--key/--ca)\n",
            path.display()
        )
    );
}

#[test]
fn stop_and_rm_take_several_ids_and_say_how_each_went() {
    let daemon = Daemon::start();
    let (first, second) =
        (start(&daemon, &["/bin/sleep", "100"]), start(&daemon, &["/bin/sleep", "100"]));
    let missing = "abcdefgh-1234-5678-0987-abcdefgh";
    let stopped = cli(&daemon, "client1", &["stop", "--grace", "0", &first[..8], missing, &second]);
    assert_eq!(stopped.status.code(), Some(1), "one of three failed");
    assert_eq!(text(&stopped.stdout), format!("Killed task {first}\nKilled task {second}\n"));
    assert_eq!(text(&stopped.stderr), format!("Task '{missing}' doesn't exist\n"));
    let quiet = text(&cli(&daemon, "client1", &["ps", "-a", "-q"]).stdout);
    let listed: Vec<&str> = quiet.lines().collect();
    let removed = cli(&daemon, "client1", &[&["rm"], listed.as_slice()].concat());
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    assert_eq!(text(&removed.stdout).lines().count(), 2);
    assert_eq!(text(&cli(&daemon, "client1", &["ps", "-a", "-q"]).stdout), "");
}
