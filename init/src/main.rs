//! `rrocker-init`: PID 1 of every task, and (as `rrocker-exec`) the parent of a further
//! command run in a running task. As PID 1, the engine starts it inside the task's fresh
//! namespaces, as root of the task's user namespace, with the report pipe as fd 3 and, when
//! the daemon places it in cgroups itself, a go pipe as fd 4, and its seccomp filters as fd 5
//! unless they are off. It finishes the set-up that only a process inside can do
//! ([`setup`]), waits until it is placed, installs the filters, then runs the command
//! as its child and reports READY. From then on it forwards every signal it gets to the
//! command (but SIGCHLD and SIGPIPE, its own), reaps every orphan, reports how the command ended
//! and exits with its status (128 + signal when a signal killed it). A failed step is
//! reported with its errno, and init exits 127. As `rrocker-exec`, the engine starts it in
//! a running task's namespaces (outside its PID namespace, whose children it makes): it
//! sets nothing up, takes the task's restrictions and filters, and runs and supervises its
//! command the same way. With a terminal, it relays the command's pty ([`relay`]).
//!
//! `no_main`: the Rust runtime's own start-up (stack guard from /proc/self/maps, signal
//! handlers) is not needed here and would cost every task's start.

#![cfg_attr(not(test), no_main)]
// Its test build (a harness with no tests of its own: init is tested end to end, in tests/)
// leaves the C `main` out.
#![cfg_attr(test, allow(dead_code))]

mod relay;
mod setup;
mod sys;

use std::convert::Infallible;
use std::ffi::{CString, OsStr, c_int};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rrocker_init::control::Control;
use rrocker_init::plan::InitPlan;
use rrocker_init::report;
use rrocker_init::step::InitStep;

use relay::Relay;
use setup::{EINVAL, StepError, c_string, einval, step};

/// The report pipe's fd.
const REPORT_FD: c_int = 3;
/// The go pipe's fd, when there is one.
const GO_FD: c_int = 4;
/// The seccomp filters' fd, when there are any.
const FILTERS_FD: c_int = rrocker_init::filters::FILTERS_FD;

/// The C entry point.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: c_int, _argv: *const *const std::ffi::c_char) -> c_int {
    let mut report = sys::inherited(REPORT_FD);
    let Err((failed, error)) = run(&mut report);
    send(&mut report, failed as u8, error.raw_os_error().unwrap_or(EINVAL));
    127
}

/// Sets the task up, starts the command and supervises it; returns only on a failed step.
fn run(report: &mut File) -> Result<Infallible, StepError> {
    let plan =
        InitPlan::from_argv(std::env::args_os()).ok_or_else(|| (InitStep::Arguments, einval()))?;
    if plan.joined {
        setup::restrict()?;
    } else {
        setup::run(&plan)?;
    }
    let mut waited = sys::forwarded_signals();
    waited.push(sys::SIGCHLD);
    let waited = sys::SignalSet::of(&waited);
    waited.block().map_err(step(InitStep::Signals))?;
    // The command starts in the task's cgroups, seeing them as its cgroup namespace's root.
    wait_for_placement().map_err(step(InitStep::Placement))?;
    // (A joining init is in the task's cgroup namespace already.)
    if !plan.joined {
        sys::unshare_cgroup_namespace().map_err(step(InitStep::CgroupNamespace))?;
    }
    install_filters().map_err(step(InitStep::Seccomp))?;
    let signals = sys::SignalFd::new(&waited).map_err(step(InitStep::Signals))?;
    let relay = plan.terminal.map(Relay::open).transpose().map_err(step(InitStep::Terminal))?;
    let command = start_command(&plan, relay.as_ref())?;
    send(report, report::READY, 0);
    supervise(command, signals, relay, report)
}

/// Waits until the engine has placed init in the task's cgroups, when it said it would (by
/// handing over a go pipe): one byte means placed, end of file means the placement failed.
fn wait_for_placement() -> io::Result<()> {
    if !sys::is_open(GO_FD) {
        return Ok(());
    }
    let mut byte = [0u8; 1];
    match sys::inherited(GO_FD).read(&mut byte)? {
        1 => Ok(()),
        _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
    }
}

/// Installs the seccomp filters the daemon handed over, if it did (see
/// [`rrocker_init::filters`]); from here on they bind init and everything it starts.
fn install_filters() -> io::Result<()> {
    if !sys::is_open(FILTERS_FD) {
        return Ok(());
    }
    let file = sys::inherited(FILTERS_FD);
    let mut bytes = Vec::new();
    // Read at offsets: the memfd's file position is shared with every other task's init.
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let offset = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        match file.read_at(&mut chunk, offset)? {
            0 => break,
            read => bytes.extend_from_slice(&chunk[..read]),
        }
    }
    drop(file);
    let filters = rrocker_init::filters::decode(&bytes).ok_or_else(einval)?;
    filters.into_iter().try_for_each(sys::install_seccomp_filter)
}

/// Starts the command in its working directory with init's environment and only stdio (or
/// only its terminal); returns its pid once its exec succeeded.
fn start_command(plan: &InitPlan, relay: Option<&Relay>) -> Result<i32, StepError> {
    std::env::set_current_dir(OsStr::from_bytes(&plan.workdir)).map_err(step(InitStep::Workdir))?;
    sys::only_stdio_on_exec().map_err(step(InitStep::Fork))?;
    let program = c_string(&plan.program).map_err(step(InitStep::Exec))?;
    let argv: Vec<CString> = plan
        .argv
        .iter()
        .map(|arg| c_string(arg))
        .collect::<Result<_, _>>()
        .map_err(step(InitStep::Exec))?;
    let terminal = relay.map(|relay| relay.slave.as_c_str());
    sys::spawn(&program, &argv, terminal).map_err(step(InitStep::Exec))
}

/// Forwards signals to `command`, relays its terminal if it has one, and reaps children
/// until `command` has exited; then passes on the rest of its terminal's output, reports how
/// it ended and exits with its status (128 + signal if a signal killed it).
fn supervise(
    command: i32,
    mut signals: sys::SignalFd,
    mut relay: Option<Relay>,
    report: &mut File,
) -> ! {
    let no_fd = sys::PollFd { fd: -1, events: 0, revents: 0 };
    loop {
        let mut fds =
            [sys::PollFd { fd: signals.fd(), events: sys::POLLIN, revents: 0 }, no_fd, no_fd];
        if let Some(relay) = &relay {
            let [master, input] = relay.interests();
            (fds[1], fds[2]) = (master, input);
        }
        if sys::wait_ready(&mut fds, -1).is_err() {
            continue;
        }
        if let Some(relay) = &mut relay {
            relay.relay([fds[1], fds[2]]);
        }
        if fds[0].revents == 0 {
            continue;
        }
        let Ok(signal) = signals.next() else { continue };
        match signal.number {
            sys::SIGCHLD => {
                while let Some((pid, status)) = sys::reap_any() {
                    if pid == command {
                        if let Some(relay) = &mut relay {
                            relay.drain();
                        }
                        exit_like(ExitStatus::from_raw(status), report);
                    }
                }
            }
            number if let Some(control) = Control::decode(number, signal.code, signal.value) => {
                match (control, &relay) {
                    (Control::Resize(size), Some(relay)) => relay.resize(size),
                    (Control::Resize(_), None) => {}
                    (Control::Forward(forwarded), _) => {
                        let _ = sys::send_signal(command, forwarded);
                    }
                }
            }
            number => {
                let _ = sys::send_signal(command, number);
            }
        }
    }
}

/// Reports how the command ended and exits the same way.
fn exit_like(status: ExitStatus, report: &mut File) -> ! {
    match (status.code(), status.signal()) {
        (_, Some(signal)) => {
            send(report, report::SIGNALED, signal);
            std::process::exit(128 + signal)
        }
        (code, None) => {
            let code = code.unwrap_or(EINVAL);
            send(report, report::EXITED, code);
            std::process::exit(code)
        }
    }
}

/// Sends a report record to the engine (which may be gone: nothing to do then).
fn send(report: &mut File, tag: u8, value: i32) {
    let _ = report.write_all(&report::encode(tag, value));
}
