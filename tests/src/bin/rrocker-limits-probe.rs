//! Test helper copied into a task's image: per-uid pipe buffer accounting and pids limits,
//! seen from inside.
//!
//! `rrocker-limits-probe fill N` makes N pipes of 1 MiB each (the kernel counts their pages
//! against the task's host uid), prints the size a fresh pipe gets then `filled`, and holds
//! them until killed. `rrocker-limits-probe size` prints the size a fresh pipe gets.
//! `rrocker-limits-probe forks N` forks up to N children that wait, stops at the first fork
//! that fails, prints `forked K`, and holds them until killed.

use std::io::Write;
use std::os::fd::OwnedFd;

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("fill") => {
            let count: usize = args.next().and_then(|n| n.parse().ok()).expect("a count");
            let held: Vec<(OwnedFd, OwnedFd)> = (0..count)
                .map(|_| {
                    let (read, write) = rustix::pipe::pipe().expect("pipe");
                    // Refused once the uid is over its soft limit: the pipe stays small.
                    let _ = rustix::pipe::fcntl_setpipe_size(&read, 1 << 20);
                    (read, write)
                })
                .collect();
            println!("{}", fresh_pipe_size());
            println!("filled");
            let _ = std::io::stdout().flush();
            // Holds the pipes until the task is stopped.
            loop {
                std::thread::park();
                assert_eq!(held.len(), count);
            }
        }
        Some("size") => println!("{}", fresh_pipe_size()),
        Some("forks") => {
            let count: usize = args.next().and_then(|n| n.parse().ok()).expect("a count");
            let mut forked = 0;
            while forked < count {
                // SAFETY: the child only waits for signals (pause is async-signal-safe).
                match unsafe { libc::fork() } {
                    -1 => break,
                    0 => loop {
                        // SAFETY: pause takes nothing.
                        unsafe { libc::pause() };
                    },
                    _ => forked += 1,
                }
            }
            println!("forked {forked}");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::park();
            }
        }
        _ => panic!("usage: rrocker-limits-probe fill N | size | forks N"),
    }
}

/// The buffer size of a new pipe.
fn fresh_pipe_size() -> usize {
    let (read, _write) = rustix::pipe::pipe().expect("pipe");
    rustix::pipe::fcntl_getpipe_size(&read).expect("F_GETPIPE_SZ")
}
