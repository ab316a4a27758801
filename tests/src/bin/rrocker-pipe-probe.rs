//! Test helper copied into a task's image: per-uid pipe buffer accounting, seen from inside.
//!
//! `rrocker-pipe-probe fill N` makes N pipes of 1 MiB each (the kernel counts their pages
//! against the task's host uid), prints the size a fresh pipe gets then `filled`, and holds
//! them until killed. `rrocker-pipe-probe size` prints the size a fresh pipe gets.

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
        _ => panic!("usage: rrocker-pipe-probe fill N | size"),
    }
}

/// The buffer size of a new pipe.
fn fresh_pipe_size() -> usize {
    let (read, _write) = rustix::pipe::pipe().expect("pipe");
    rustix::pipe::fcntl_getpipe_size(&read).expect("F_GETPIPE_SZ")
}
