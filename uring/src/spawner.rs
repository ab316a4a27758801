//! The spawner: a small helper process that clones tasks for the engine.
//!
//! A clone copies the caller's page tables and fd table, and the daemon's grow with its tasks
//! (at 1,000 running tasks a clone from the daemon took 2.5-6 ms, and left every page of the
//! daemon write-protected for copy-on-write). The daemon forks the spawner at start-up, while
//! it is still small and single-threaded, and sends it each child's plan and fds over a unix
//! socket. The spawner clones with CLONE_PARENT, so every task is still the daemon's own
//! child (its pidfd can be waited on, its parent-death signal follows the daemon), and sends
//! the pidfd back. The spawner dies with the daemon.

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::child::{self, ChildPlan, ExecTarget, HANDED_FDS, HandedFd};
use crate::sys;

/// Most fds a request carries: stdio, error pipe, sync pipe, the handed ones, cgroup, netns,
/// program.
const MAX_FDS: usize = 14;

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
    /// the child's pid and pidfd, as [`child::spawn_child`] does.
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

/// Flag bits of a request.
const REPORT_FD: u16 = 1;
const BECOME_ROOT: u16 = 2;
const DROP_GROUPS: u16 = 4;
const SYNC: u16 = 8;
const CGROUP: u16 = 32;
const NETWORK: u16 = 64;
const PROGRAM_FILE: u16 = 128;
/// Bit of the first handed fd (the go pipe); the others follow.
const FIRST_HANDED: u16 = 1 << 8;
/// Bit of the first handed directory (a path the child opens); the others follow.
const FIRST_HANDED_DIR: u16 = 1 << 12;

/// A request: `[namespaces u64][flags u16 LE][oom score i32 LE, i32::MIN for none][workdir][path, unless PROGRAM_FILE][argc u32]
/// [argv...][envc u32][env...]`, each string as `[length u32][bytes]` (no NUL); and its fds
/// in order: stdin, stdout, stderr, error pipe, then sync read and write ends, the handed fds
/// (go pipe first), cgroup, network namespace and program, those that are there.
fn encode<'a>(
    plan: &ChildPlan<'a>,
    network: Option<BorrowedFd<'a>>,
) -> (Vec<u8>, Vec<BorrowedFd<'a>>) {
    let mut flags = 0;
    let mut fds = plan.stdio.to_vec();
    fds.push(plan.error_pipe);
    for (set, bit) in [
        (plan.report_fd, REPORT_FD),
        (plan.become_root, BECOME_ROOT),
        (plan.drop_groups, DROP_GROUPS),
    ] {
        if set {
            flags |= bit;
        }
    }
    if let Some((read_end, write_end)) = plan.sync {
        flags |= SYNC;
        fds.extend([read_end, write_end]);
    }
    let handed = plan.handed.iter().zip(0..).map(|(handed, slot)| match handed {
        Some(HandedFd::Fd(fd)) => (Some(*fd), FIRST_HANDED << slot),
        _ => (None, 0),
    });
    for (fd, bit) in handed.chain([(plan.cgroup, CGROUP), (network, NETWORK)]) {
        if let Some(fd) = fd {
            flags |= bit;
            fds.push(fd);
        }
    }
    let mut payload = plan.namespaces.to_le_bytes().to_vec();
    payload.extend_from_slice(&[0, 0]);
    let oom_score = plan.oom_score_adj.and_then(|score| score.to_str().ok()?.parse::<i32>().ok());
    payload.extend_from_slice(&oom_score.unwrap_or(i32::MIN).to_le_bytes());
    let put = |payload: &mut Vec<u8>, bytes: &[u8]| {
        let length = u32::try_from(bytes.len()).expect("a request string is under 4 GiB");
        payload.extend_from_slice(&length.to_le_bytes());
        payload.extend_from_slice(bytes);
    };
    put(&mut payload, plan.workdir.to_bytes());
    match plan.target {
        ExecTarget::File(file) => {
            flags |= PROGRAM_FILE;
            fds.push(file);
        }
        ExecTarget::Path(path) => put(&mut payload, path.to_bytes()),
    }
    for strings in [plan.argv_strings, plan.env_strings] {
        let count = u32::try_from(strings.len()).expect("fewer than 4 billion strings");
        payload.extend_from_slice(&count.to_le_bytes());
        for string in strings {
            put(&mut payload, string.to_bytes());
        }
    }
    for (handed, slot) in plan.handed.iter().zip(0..) {
        if let Some(HandedFd::Dir(path)) = handed {
            flags |= FIRST_HANDED_DIR << slot;
            put(&mut payload, path.to_bytes());
        }
    }
    payload[8..10].copy_from_slice(&flags.to_le_bytes());
    (payload, fds)
}

/// A request as the spawner received it.
#[derive(Debug)]
struct Request {
    namespaces: u64,
    flags: u16,
    oom_score_adj: Option<CString>,
    workdir: CString,
    path: Option<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// The handed directories, by slot.
    dirs: [Option<CString>; HANDED_FDS],
}

/// Decodes a request's payload; `None` if it is malformed.
fn decode(payload: &[u8]) -> Option<Request> {
    let mut cursor = Cursor { rest: payload };
    let namespaces = u64::from_le_bytes(cursor.take(8)?.try_into().ok()?);
    let flags = u16::from_le_bytes(cursor.take(2)?.try_into().ok()?);
    let oom_score = i32::from_le_bytes(cursor.take(4)?.try_into().ok()?);
    let oom_score_adj =
        (oom_score != i32::MIN).then(|| CString::new(oom_score.to_string()).ok()).flatten();
    let workdir = cursor.string()?;
    let path = if flags & PROGRAM_FILE == 0 { Some(cursor.string()?) } else { None };
    let argv = cursor.strings()?;
    let env = cursor.strings()?;
    let mut dirs: [Option<CString>; HANDED_FDS] = Default::default();
    for (slot, dir) in (0..).zip(&mut dirs) {
        if flags & FIRST_HANDED_DIR << slot != 0 {
            *dir = Some(cursor.string()?);
        }
    }
    let request = Request { namespaces, flags, oom_score_adj, workdir, path, argv, env, dirs };
    cursor.rest.is_empty().then_some(request)
}

/// Reads a payload front to back.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(count)?;
        self.rest = rest;
        Some(taken)
    }

    fn number(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()
    }

    fn string(&mut self) -> Option<CString> {
        let length = self.number()?;
        CString::new(self.take(length)?).ok()
    }

    fn strings(&mut self) -> Option<Vec<CString>> {
        let count = self.number()?;
        // Each string takes at least its four length bytes.
        if count > self.rest.len() / 4 {
            return None;
        }
        (0..count).map(|_| self.string()).collect()
    }
}

/// Sends a message with fds attached (one SEQPACKET record).
fn send(socket: &OwnedFd, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds for the spawner"));
    }
    let sent =
        rustix::net::sendmsg(socket, &[IoSlice::new(payload)], &mut control, SendFlags::empty())?;
    if sent != payload.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "a short write to the spawner"));
    }
    Ok(())
}

/// Receives one record into `buffer` with the fds attached to it; a length of 0 means the
/// other end is gone.
fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(buffer)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            result => break result?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if received.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a spawner record too large"));
    }
    Ok((received.bytes, fds))
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
    plan.namespaces = request.namespaces | libc::CLONE_PARENT as u64;
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
        Some(network) => crate::netns::within(network.as_fd(), home, || child::spawn_child(&plan))?,
        None => child::spawn_child(&plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_decodes_to_what_was_encoded() {
        let argv = [c"/bin/sh".to_owned(), c"-c".to_owned()];
        let env = [c"A=b".to_owned()];
        let workdir = c"/tmp".to_owned();
        let path = c"/bin/sh".to_owned();
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        let stdio = [null.as_fd(), null.as_fd(), null.as_fd()];
        let mut plan =
            ChildPlan::new(ExecTarget::Path(&path), &argv, &env, &workdir, stdio, null.as_fd());
        plan.namespaces = 0x1234;
        plan.report_fd = true;
        let dir = c"/run/t".to_owned();
        let fd = Some(HandedFd::Fd(null.as_fd()));
        plan.handed = [fd, None, fd, Some(HandedFd::Dir(&dir))];
        let score = c"500".to_owned();
        plan.oom_score_adj = Some(&score);
        let (payload, fds) = encode(&plan, Some(null.as_fd()));
        assert_eq!(fds.len(), 7, "stdio, error pipe, go, the second init fd, network");
        let request = decode(&payload).expect("decodes");
        assert_eq!(request.namespaces, 0x1234);
        let handed = FIRST_HANDED | FIRST_HANDED << 2 | FIRST_HANDED_DIR << 3;
        assert_eq!(request.flags, REPORT_FD | handed | NETWORK);
        assert_eq!(request.dirs, [None, None, None, Some(dir)]);
        assert_eq!(request.oom_score_adj, Some(score));
        assert_eq!((request.workdir, request.path), (workdir, Some(path)));
        assert_eq!((request.argv.as_slice(), request.env.as_slice()), (&argv[..], &env[..]));
    }

    #[test]
    fn malformed_requests_do_not_decode() {
        assert!(decode(&[]).is_none());
        let mut truncated = 0u64.to_le_bytes().to_vec();
        truncated.extend_from_slice(&[0, 0, 0, 0, 0, 0x80, 9, 0, 0, 0, b'/']);
        assert!(decode(&truncated).is_none());
        let mut huge_count = 0u64.to_le_bytes().to_vec();
        huge_count.extend_from_slice(&PROGRAM_FILE.to_le_bytes());
        huge_count.extend_from_slice(&i32::MIN.to_le_bytes());
        huge_count.extend_from_slice(&[1, 0, 0, 0, b'/', 255, 255, 255, 255]);
        assert!(decode(&huge_count).is_none());
    }
}
