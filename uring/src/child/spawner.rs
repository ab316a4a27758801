//! The spawner: a small helper process that clones tasks for the engine.
//!
//! A clone copies the caller's page tables and fd table, and the daemon's grow with its tasks
//! (at 1,000 running tasks a clone from the daemon took 2.5-6 ms, and left every page of the
//! daemon write-protected for copy-on-write). The daemon forks the spawner at start-up, while
//! it is still small and single-threaded, and sends it each child's plan and fds over a unix
//! socket. The spawner clones with CLONE_PARENT, so every task is still the daemon's own
//! child (its pidfd can be waited on, its parent-death signal follows the daemon), and sends
//! the pidfd back. The spawner dies with the daemon.
//! What crosses the socket is in `spawner_wire`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::exec::spawn_child;
use super::plan::{ChildPlan, ExecTarget, HANDED_FDS, HandedFd};
use super::spawner_wire::{
    BECOME_ROOT, CGROUP, DROP_GROUPS, FIRST_HANDED, NETWORK, PROGRAM_FILE, REPORT_FD, SYNC, decode,
    encode, receive, send,
};
use crate::sys;

/// The daemon's end of the spawner.
#[derive(Debug)]
pub struct Spawner {
    socket: Mutex<OwnedFd>,
    pid: u32,
    /// Set once the spawner is found dead: the engine clones by itself from then on.
    gone: AtomicBool,
}

impl Spawner {
    /// Forks the spawner. Only while the process is single-threaded (before any runtime
    /// starts; refused otherwise), so that the spawner is a plain copy that may allocate.
    pub fn fork() -> io::Result<Self> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // Room for a whole command in one record (FORCE needs CAP_NET_ADMIN; else the host's
        // wmem_max caps it, and a larger command is cloned by the engine itself).
        let room = MAX_REQUEST;
        let _ = rustix::net::sockopt::set_socket_send_buffer_size_force(&ours, room)
            .or_else(|_| rustix::net::sockopt::set_socket_send_buffer_size(&ours, room));
        let daemon = std::process::id();
        match sys::fork_single_threaded()? {
            None => {
                drop(ours);
                serve(&theirs, daemon)
            }
            Some(pid) => Ok(Self { socket: Mutex::new(ours), pid, gone: AtomicBool::new(false) }),
        }
    }

    /// Has the spawner clone a child that runs `plan`, born in `network` if given; returns
    /// the child's pid and pidfd, as [`spawn_child`] does.
    pub(crate) fn spawn(
        &self,
        plan: &ChildPlan<'_>,
        network: Option<BorrowedFd<'_>>,
    ) -> io::Result<(u32, OwnedFd)> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the spawner is gone");
        if self.gone.load(Ordering::Relaxed) {
            return Err(gone());
        }
        let (payload, fds) = encode(plan, network);
        let socket = self.socket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut reply = [0u8; 5];
        let answer = send(&socket, &payload, &fds).and_then(|()| receive(&socket, &mut reply));
        let number = u32::from_le_bytes(reply[1..5].try_into().expect("four bytes"));
        match answer {
            Ok((5, mut pidfds)) if reply[0] == 0 && pidfds.len() == 1 => {
                Ok((number, pidfds.remove(0)))
            }
            Ok((5, _)) if reply[0] == 1 => {
                Err(io::Error::from_raw_os_error(i32::try_from(number).unwrap_or(libc::EIO)))
            }
            Err(error) if error.raw_os_error() == Some(libc::EMSGSIZE) => Err(error),
            // Gone (killed, crashed) or speaking nonsense: never ask it again.
            _ => {
                if !self.gone.swap(true, Ordering::Relaxed) {
                    tracing::error!(pid = self.pid, "the spawner is gone; the engine clones tasks");
                    // Our unreaped child: its pid cannot name anyone else.
                    self.reap(Some(rustix::process::Signal::KILL));
                }
                Err(gone())
            }
        }
    }

    /// Whether an error of [`Self::spawn`] means that the engine should clone by itself: the
    /// command is too large for the socket, or the spawner is gone.
    pub(crate) fn clone_here_instead(error: &io::Error) -> bool {
        error.raw_os_error() == Some(libc::EMSGSIZE) || error.kind() == io::ErrorKind::BrokenPipe
    }

    /// Sends `signal` to the spawner, if given, and waits for it to exit.
    fn reap(&self, signal: Option<rustix::process::Signal>) {
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(rustix::process::Pid::from_raw) {
            if let Some(signal) = signal {
                let _ = rustix::process::kill_process(pid, signal);
            }
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
    }
}

impl Drop for Spawner {
    /// Closes the socket, which ends the spawner, and reaps it (unless it was reaped as gone).
    fn drop(&mut self) {
        if self.gone.load(Ordering::Relaxed) {
            return;
        }
        let socket = self.socket.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = rustix::net::shutdown(&*socket, rustix::net::Shutdown::Both);
        self.reap(None);
    }
}

/// Most bytes of a request (argv and env are capped well below it by the daemon).
const MAX_REQUEST: usize = 4 << 20;

/// The spawner's life: clone a child for each request until the daemon is gone.
fn serve(socket: &OwnedFd, daemon: u32) -> ! {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let _ = rustix::thread::set_name(c"rrocker-spawn");
    // The daemon may have died before the death signal was armed.
    let parent = rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get());
    if parent.and_then(|pid| u32::try_from(pid).ok()) != Some(daemon) {
        std::process::exit(0);
    }
    let Ok(home) = std::fs::File::open("/proc/thread-self/ns/net") else { std::process::exit(1) };
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        let (length, fds) = match receive(socket, &mut buffer) {
            Ok((0, _)) | Err(_) => std::process::exit(0),
            Ok(received) => received,
        };
        let reply = clone_for(&buffer[..length], fds, home.as_fd());
        let sent = match &reply {
            Ok((pid, pidfd)) => {
                let mut message = vec![0u8];
                message.extend_from_slice(&pid.to_le_bytes());
                send(socket, &message, &[pidfd.as_fd()])
            }
            Err(error) => {
                let errno = u32::try_from(error.raw_os_error().unwrap_or(libc::EIO)).unwrap_or(5);
                let mut message = vec![1u8];
                message.extend_from_slice(&errno.to_le_bytes());
                send(socket, &message, &[])
            }
        };
        if sent.is_err() {
            std::process::exit(0);
        }
    }
}

/// Clones the child a request describes, from the spawner, as a child of the daemon.
fn clone_for(
    payload: &[u8],
    fds: Vec<OwnedFd>,
    home: BorrowedFd<'_>,
) -> io::Result<(u32, OwnedFd)> {
    let malformed = || io::Error::from_raw_os_error(libc::EINVAL);
    let request = decode(payload).ok_or_else(malformed)?;
    let mut fds = fds.into_iter();
    let mut next = || fds.next().ok_or_else(malformed);
    let stdio = [next()?, next()?, next()?];
    let error_pipe = next()?;
    let has = |bit: u16| request.flags & bit != 0;
    let sync = if has(SYNC) { Some((next()?, next()?)) } else { None };
    let mut handed: [Option<OwnedFd>; HANDED_FDS] = Default::default();
    for (slot, fd) in (0..).zip(&mut handed) {
        if has(FIRST_HANDED << slot) {
            *fd = Some(next()?);
        }
    }
    let cgroup = if has(CGROUP) { Some(next()?) } else { None };
    let network = if has(NETWORK) { Some(next()?) } else { None };
    let program = if has(PROGRAM_FILE) { Some(next()?) } else { None };
    let target = match (&program, &request.path) {
        (Some(file), _) => ExecTarget::File(file.as_fd()),
        (None, Some(path)) => ExecTarget::Path(path),
        (None, None) => return Err(malformed()),
    };
    let stdio_fds = [stdio[0].as_fd(), stdio[1].as_fd(), stdio[2].as_fd()];
    let mut plan = ChildPlan::new(
        target,
        &request.argv,
        &request.env,
        &request.workdir,
        stdio_fds,
        error_pipe.as_fd(),
    );
    plan.namespaces = request.namespaces;
    plan.as_sibling = true;
    plan.report_fd = has(REPORT_FD);
    plan.become_root = has(BECOME_ROOT);
    plan.drop_groups = has(DROP_GROUPS);
    plan.sync = sync.as_ref().map(|(read_end, write_end)| (read_end.as_fd(), write_end.as_fd()));
    for ((slot, fd), dir) in plan.handed.iter_mut().zip(&handed).zip(&request.dirs) {
        *slot = match (fd, dir) {
            (Some(fd), _) => Some(HandedFd::Fd(fd.as_fd())),
            (None, Some(dir)) => Some(HandedFd::Dir(dir)),
            (None, None) => None,
        };
    }
    plan.cgroup = cgroup.as_ref().map(AsFd::as_fd);
    plan.oom_score_adj = request.oom_score_adj.as_deref();
    plan.parent_pid = rustix::process::Pid::as_raw(rustix::process::getppid());
    match network {
        Some(network) => crate::netns::within(network.as_fd(), home, || spawn_child(&plan))?,
        None => spawn_child(&plan),
    }
}
