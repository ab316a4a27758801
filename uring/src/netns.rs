//! A pool of ready network namespaces, so that a task's spawn does not pay for making one
//! (about a millisecond here). A thread of its own keeps a few made: `unshare(CLONE_NEWNET)`
//! on itself, loopback up, ports below 1024 and ping open to every uid (the task's root does
//! not own a namespace made outside its user namespace), and an fd to keep it. The engine
//! thread enters one just around `clone3`, so the child is born in it, and returns to the
//! daemon's own namespace at once. Every namespace serves one task; an empty pool makes one
//! on the spot, the same way. The maker thread runs at idle priority, so that it never takes
//! a CPU from a task's start.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Network namespaces kept ready.
const READY: usize = 4;

/// The pool, used by the engine thread.
#[derive(Debug)]
pub(crate) struct NetnsPool {
    ready: mpsc::Receiver<OwnedFd>,
    /// The engine thread's own network namespace, to return to.
    home: OwnedFd,
}

impl NetnsPool {
    /// Starts the maker thread after checking that a namespace can be made at all (it needs
    /// CAP_SYS_ADMIN). Called on the engine thread.
    pub(crate) fn start() -> io::Result<Self> {
        let home = current()?;
        let first = make_here(&home)?;
        let (sender, ready) = mpsc::sync_channel(READY);
        let _ = sender.send(first);
        std::thread::Builder::new().name("rrocker-netns".into()).spawn(move || {
            // Making a namespace takes a millisecond of CPU: never from a task's start.
            if let Err(error) = crate::sys::idle_priority() {
                tracing::warn!(%error, "cannot lower the network namespace maker's priority");
            }
            // Between two namespaces the thread waits in its own, not in one a task got.
            let Ok(home) = current() else { return };
            loop {
                let namespace = match make_here(&home) {
                    Ok(namespace) => namespace,
                    Err(error) => {
                        tracing::warn!(%error, "cannot make a network namespace ahead");
                        return;
                    }
                };
                // Blocks while the pool is full; ends when the engine is gone.
                if sender.send(namespace).is_err() {
                    return;
                }
            }
        })?;
        Ok(Self { ready, home })
    }

    /// A fresh namespace: one made ahead, or else one made now.
    pub(crate) fn take(&self) -> io::Result<OwnedFd> {
        match self.ready.try_recv() {
            Ok(namespace) => Ok(namespace),
            Err(_) => make_here(&self.home),
        }
    }

    /// Runs `spawn` with the calling (engine) thread in a fresh network namespace, then
    /// returns the thread to its own.
    pub(crate) fn within_fresh<T>(&self, spawn: impl FnOnce() -> T) -> io::Result<T> {
        self.within(self.take()?, spawn)
    }

    /// Runs `spawn` with the calling (engine) thread in `namespace` (one [`Self::take`]
    /// gave), then returns the thread to its own.
    pub(crate) fn within<T>(&self, namespace: OwnedFd, spawn: impl FnOnce() -> T) -> io::Result<T> {
        within(namespace.as_fd(), self.home.as_fd(), spawn)
    }
}

/// Runs `run` with the calling thread in the network namespace `namespace`, then moves the
/// thread back to `home`.
///
/// A thread that cannot go back (never seen: it holds `home` open and the capability that
/// let it leave) panics, on purpose: on the engine thread that is the engine's death, which
/// the daemon reports and exits on, to be restarted clean, rather than go on cloning tasks
/// from a namespace that is not its own.
pub(crate) fn within<T>(
    namespace: BorrowedFd<'_>,
    home: BorrowedFd<'_>,
    run: impl FnOnce() -> T,
) -> io::Result<T> {
    move_into_link_name_space(namespace, Some(LinkNameSpaceType::Network))?;
    let ran = run();
    move_into_link_name_space(home, Some(LinkNameSpaceType::Network))
        .expect("a thread returns to its own network namespace");
    Ok(ran)
}

/// The calling thread's network namespace.
fn current() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}

/// Makes a namespace with the calling thread and leaves the thread in it.
fn make_and_stay() -> io::Result<OwnedFd> {
    crate::sys::unshare_network()?;
    crate::sys::loopback_up()?;
    // Per-namespace settings, written from inside: the task's root may bind low ports and
    // ping, as it could in a namespace of its own.
    std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")?;
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")?;
    current()
}

/// Makes a namespace with the calling thread and returns the thread to `home`. (It panics as
/// [`within`] does if it cannot.)
fn make_here(home: &OwnedFd) -> io::Result<OwnedFd> {
    let made = make_and_stay();
    move_into_link_name_space(home.as_fd(), Some(LinkNameSpaceType::Network))
        .expect("a thread returns to its own network namespace");
    made
}
