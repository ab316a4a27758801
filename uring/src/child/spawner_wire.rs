//! The spawner's wire format: how the daemon's end sends a child's plan and fds over the
//! unix socket (one SEQPACKET record each), and how the spawner decodes it.

use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::plan::{ChildPlan, ExecTarget, HANDED_FDS, HandedFd};
use super::spec::Namespaces;

/// Most fds a request carries: stdio, error pipe, sync pipe, the handed ones, cgroup, netns,
/// program.
const MAX_FDS: usize = 14;

/// Flag bits of a request.
pub(super) const REPORT_FD: u16 = 1;
pub(super) const BECOME_ROOT: u16 = 2;
pub(super) const DROP_GROUPS: u16 = 4;
pub(super) const SYNC: u16 = 8;
pub(super) const CGROUP: u16 = 32;
pub(super) const NETWORK: u16 = 64;
pub(super) const PROGRAM_FILE: u16 = 128;
/// Bit of the first handed fd (the go pipe); the others follow.
pub(super) const FIRST_HANDED: u16 = 1 << 8;
/// Bit of the first handed directory (a path the child opens); the others follow.
pub(super) const FIRST_HANDED_DIR: u16 = 1 << 12;

/// A request: `[namespaces u64][flags u16 LE][oom score i32 LE, i32::MIN for none][workdir][path, unless PROGRAM_FILE][argc u32]
/// [argv...][envc u32][env...]`, each string as `[length u32][bytes]` (no NUL); and its fds
/// in order: stdin, stdout, stderr, error pipe, then sync read and write ends, the handed fds
/// (go pipe first), cgroup, network namespace and program, those that are there.
pub(super) fn encode<'a>(
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
    let mut payload = plan.namespaces.clone_flags().to_le_bytes().to_vec();
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
pub(super) struct Request {
    pub(super) namespaces: Namespaces,
    pub(super) flags: u16,
    pub(super) oom_score_adj: Option<CString>,
    pub(super) workdir: CString,
    pub(super) path: Option<CString>,
    pub(super) argv: Vec<CString>,
    pub(super) env: Vec<CString>,
    /// The handed directories, by slot.
    pub(super) dirs: [Option<CString>; HANDED_FDS],
}

/// Decodes a request's payload; `None` if it is malformed.
pub(super) fn decode(payload: &[u8]) -> Option<Request> {
    let mut cursor = Cursor { rest: payload };
    let namespaces =
        Namespaces::from_clone_flags(u64::from_le_bytes(cursor.take(8)?.try_into().ok()?));
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
pub(super) fn send(socket: &OwnedFd, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
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
pub(super) fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

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
        plan.namespaces = Namespaces::PID.and(Namespaces::USER);
        plan.report_fd = true;
        let dir = c"/run/t".to_owned();
        let fd = Some(HandedFd::Fd(null.as_fd()));
        plan.handed = [fd, None, fd, Some(HandedFd::Dir(&dir))];
        let score = c"500".to_owned();
        plan.oom_score_adj = Some(&score);
        let (payload, fds) = encode(&plan, Some(null.as_fd()));
        assert_eq!(fds.len(), 7, "stdio, error pipe, go, the second init fd, network");
        let request = decode(&payload).expect("decodes");
        assert_eq!(request.namespaces, Namespaces::PID.and(Namespaces::USER));
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
