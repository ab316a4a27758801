//! Test helper copied into a task's image: tries a real `ptrace(PTRACE_ATTACH)` and prints
//! `attached` or `refused: <errno>`.
//!
//! `rrocker-ptrace-probe PID` attaches to PID; `rrocker-ptrace-probe own-child` forks a child
//! that waits to be killed and attaches to it (the control: ptrace itself works in there).

use std::io;

fn main() {
    let target = std::env::args().nth(1).expect("usage: rrocker-ptrace-probe PID|own-child");
    let (pid, child) = if target == "own-child" {
        (fork_waiting_child(), true)
    } else {
        (target.parse().expect("a pid"), false)
    };
    match attach(pid) {
        Ok(()) => println!("attached"),
        Err(error) => println!("refused: {}", error.raw_os_error().unwrap_or(0)),
    }
    if child {
        // SAFETY: kill and waitpid on the child forked above, which nothing else reaps.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Forks a child that sleeps until killed; returns its pid.
fn fork_waiting_child() -> libc::pid_t {
    // SAFETY: this program is single-threaded, so the child may run any code; it only pauses.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", io::Error::last_os_error()),
        0 => loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        },
        pid => pid,
    }
}

/// Attaches to `pid`, waits for it to stop, then detaches.
fn attach(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: PTRACE_ATTACH takes no addresses; the kernel checks the permission.
    let attached = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    if attached == -1 {
        return Err(io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status of the tracee we just attached to into `status`.
    unsafe {
        libc::waitpid(pid, &mut status, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
    }
    Ok(())
}
