//! The engine against the real kernel: spawn, output, exit status, signals, exec failures.

use std::path::PathBuf;

use rrocker_uring::{Engine, EngineConfig, EngineError, ExitStatus, OutputFd, Program, SpawnSpec};

fn shell(script: &str) -> SpawnSpec {
    SpawnSpec {
        program: Program::Path(PathBuf::from("/bin/sh")),
        argv: vec![b"sh".to_vec(), b"-c".to_vec(), script.as_bytes().to_vec()],
        env: vec![b"PATH=/usr/bin:/bin".to_vec()],
        workdir: PathBuf::from("/"),
        isolation: None,
        placement: rrocker_uring::Placement::default(),
        init_fds: [None, None, None],
        stdin: false,
    }
}

/// Whether process `pid` is gone or exits within `bound` (watched through a pidfd; the bound
/// only turns a survivor into a failure instead of a hang).
fn exits_within(pid: i32, bound: std::time::Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let pid = rustix::process::Pid::from_raw(pid).expect("positive pid");
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return true;
    };
    let timeout = Timespec::try_from(bound).expect("timespec");
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    poll(&mut fds, Some(&timeout)).expect("poll") == 1
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

async fn collect(reader: &mut rrocker_uring::LogReader) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = reader.next().await {
        match chunk.fd {
            OutputFd::Stdout => out.extend_from_slice(&chunk.data),
            OutputFd::Stderr => err.extend_from_slice(&chunk.data),
        }
    }
    (out, err)
}

#[test]
fn output_and_exit_code_arrive() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine.spawn(shell("echo out; echo err >&2; exit 3")).await.expect("spawn");
        let mut reader = task.output.reader();
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Exited(3));
        let (out, err) = collect(&mut reader).await;
        assert_eq!(out, b"out\n");
        assert_eq!(err, b"err\n");
    });
    engine.shutdown();
}

#[test]
fn stdin_is_written_in_order_and_its_end_reaches_the_command() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine
            .spawn(SpawnSpec { stdin: true, ..shell("sha256sum; wc -c </dev/null") })
            .await
            .expect("spawn");
        let stdin = task.stdin.expect("a stdin pipe");
        let mut reader = task.output.reader();
        let mut expected = Vec::new();
        // More than the pipe holds, in pieces of several sizes.
        for round in 0..200u32 {
            let piece: Vec<u8> =
                (0..(round * 997) % 70_000).map(|i| (i ^ round).to_le_bytes()[0]).collect();
            expected.extend_from_slice(&piece);
            stdin.send(bytes::Bytes::from(piece)).await.expect("queued");
        }
        drop(stdin);
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Exited(0));
        let (out, _) = collect(&mut reader).await;
        let host = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        let mut host = host;
        std::io::Write::write_all(&mut host.stdin.take().expect("stdin"), &expected)
            .expect("write");
        let digest = host.wait_with_output().expect("digest").stdout;
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{}0\n", String::from_utf8_lossy(&digest))
        );
    });
    engine.shutdown();
}

#[test]
fn a_task_that_ends_without_reading_its_stdin_is_not_held_up_by_it() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine.spawn(SpawnSpec { stdin: true, ..shell("exit 4") }).await.expect("spawn");
        let stdin = task.stdin.expect("a stdin pipe");
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Exited(4));
        // Its engine side is gone although the sender is still held: sends fail.
        task.gone.await.expect("gone");
        assert!(stdin.send(bytes::Bytes::from_static(b"late")).await.is_err());
    });
    engine.shutdown();
}

#[test]
fn only_stdio_is_inherited() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine.spawn(shell("ls /proc/self/fd")).await.expect("spawn");
        let mut reader = task.output.reader();
        let (out, _) = collect(&mut reader).await;
        // 0, 1, 2 and the directory fd ls itself opens.
        assert_eq!(String::from_utf8_lossy(&out), "0\n1\n2\n3\n");
    });
}

#[test]
fn signal_kills_and_is_reported() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine.spawn(shell("exec sleep 100")).await.expect("spawn");
        engine.signal(task.key, libc::SIGKILL).await.expect("signal");
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Signaled(libc::SIGKILL));
        // Signalling a finished task is not an error.
        engine.signal(task.key, libc::SIGTERM).await.expect("signal after exit");
    });
}

#[test]
fn missing_program_and_bad_workdir_are_reported_before_the_task_exists() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let mut spec = shell("true");
        spec.program = Program::Path(PathBuf::from("/nonexistent/binary"));
        match engine.spawn(spec).await {
            Err(EngineError::Exec { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("expected an exec error, got {other:?}"),
        }
        let mut spec = shell("true");
        spec.workdir = PathBuf::from("/nonexistent/dir");
        assert!(matches!(engine.spawn(spec).await, Err(EngineError::Workdir { .. })));
        let mut spec = shell("true");
        spec.argv.push(b"a\0b".to_vec());
        assert!(matches!(engine.spawn(spec).await, Err(EngineError::NulByte { what: "argv" })));
    });
}

#[test]
fn large_binary_output_is_byte_exact() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine
            .spawn(shell("head -c 3000000 /dev/urandom | tee /dev/stderr | od -An -tx1 | tail -1"))
            .await
            .expect("spawn");
        let mut reader = task.output.reader();
        let (out, err) = collect(&mut reader).await;
        assert_eq!(err.len(), 3_000_000);
        assert!(!out.is_empty());
    });
}

#[test]
fn a_partial_line_is_delivered_while_the_task_waits() {
    // Small reads so that one 64 KiB write (cat) fills several whole buffers; after its only
    // newline (the first byte) the burst is one partial line, and the task then waits, so
    // only the chunker can deliver the tail.
    let config = EngineConfig { read_size: 4096, chunk_limit: 4096, ..EngineConfig::default() };
    let engine = Engine::start(config).expect("engine");
    runtime().block_on(async {
        let task = engine
            .spawn(shell(
                "f=$(mktemp); { echo; head -c 65535 /dev/zero | tr '\\0' x; } > $f; \
                 cat $f; rm $f; exec sleep 600",
            ))
            .await
            .expect("spawn");
        let mut reader = task.output.reader();
        let mut received = 0;
        while received < 65536 {
            received += reader.next().await.expect("output while the task runs").data.len();
        }
        assert_eq!(received, 65536);
        engine.signal(task.key, libc::SIGKILL).await.expect("kill");
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Signaled(libc::SIGKILL));
    });
}

#[test]
fn background_processes_die_with_the_task() {
    let engine = Engine::start(EngineConfig::default()).expect("engine");
    runtime().block_on(async {
        let task = engine.spawn(shell("sleep 600 >/dev/null 2>&1 & echo $!")).await.expect("spawn");
        let mut reader = task.output.reader();
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Exited(0));
        let (out, _) = collect(&mut reader).await;
        let pid: i32 = String::from_utf8(out).expect("utf8").trim().parse().expect("pid");
        assert!(exits_within(pid, std::time::Duration::from_secs(10)), "sleep {pid} survived");
    });
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[test]
fn output_beyond_the_window_spills_and_every_reader_gets_every_byte() {
    let spill = tempfile::tempdir().expect("spill dir");
    let config = EngineConfig {
        spill_dir: Some(spill.path().to_owned()),
        window_bytes: 256 * 1024,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config).expect("engine");
    runtime().block_on(async {
        // 24 MiB of numbered lines on stdout, a line on stderr every 1000th line.
        let script = "seq -f 'line %08.0f' 1 2200000; seq -f 'err %.0f' 1 1000 2200000 >&2";
        let task = engine.spawn(shell(script)).await.expect("spawn");
        let mut live = task.output.reader();
        let output = std::sync::Arc::clone(&task.output);
        // Follow while it runs, checking the window stays near its budget.
        let (mut out, mut err, mut most) = (Vec::new(), Vec::new(), 0);
        while let Some(chunk) = live.next().await {
            most = most.max(output.window_bytes());
            match chunk.fd {
                OutputFd::Stdout => out.extend_from_slice(&chunk.data),
                OutputFd::Stderr => err.extend_from_slice(&chunk.data),
            }
        }
        assert_eq!(task.exit.await.expect("exit"), ExitStatus::Exited(0));
        let expected: String = (1..=2_200_000).map(|n| format!("line {n:08}\n")).collect();
        assert_eq!(sha256(&out), sha256(expected.as_bytes()));
        assert!(most <= 2 * 256 * 1024 + 2 * 65536, "window grew to {most} bytes");
        assert!(output.window_bytes() <= 256 * 1024 + 65536, "the rest went to the file");
        // A late reader replays it all from the file, then the window.
        let (late_out, late_err) = collect(&mut output.reader()).await;
        assert_eq!(sha256(&late_out), sha256(expected.as_bytes()));
        assert_eq!(late_err, err);
        assert_eq!(err.iter().filter(|&&b| b == b'\n').count(), 2200);
    });
    engine.shutdown();
    assert_eq!(
        std::fs::read_dir(spill.path()).expect("dir").count(),
        0,
        "spill files are unlinked"
    );
}

#[test]
fn the_shared_budget_shrinks_every_writing_window() {
    let spill = tempfile::tempdir().expect("spill dir");
    let config = EngineConfig {
        spill_dir: Some(spill.path().to_owned()),
        window_bytes: 4 << 20,
        budget_bytes: 1 << 20,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config).expect("engine");
    runtime().block_on(async {
        // Four tasks of 6 MiB each: alone, each would keep up to 4 MiB in memory.
        let mut tasks = Vec::new();
        for _ in 0..4 {
            tasks.push(engine.spawn(shell("head -c 6291456 /dev/zero")).await.expect("spawn"));
        }
        let mut logs = Vec::new();
        for task in tasks {
            assert_eq!(task.exit.await.expect("exit"), ExitStatus::Exited(0));
            logs.push(task.output);
        }
        for log in &logs {
            // Every byte is still there for a late reader.
            let (out, _) = collect(&mut log.reader()).await;
            assert_eq!(out.len(), 6 << 20);
            assert!(out.iter().all(|&byte| byte == 0));
        }
        let held: usize = logs.iter().map(|log| log.window_bytes()).sum();
        assert!(held <= 2 << 20, "{held} bytes in memory for a 1 MiB budget");
    });
    engine.shutdown();
}
