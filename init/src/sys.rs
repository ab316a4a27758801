//! init's syscall layer: the C library calls std does not wrap, declared here because init has
//! no dependencies (see the crate's doc), each behind a safe function. Constants are the
//! kernel's, the same on every architecture rrocker builds for except where marked.

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_ulong, c_void};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// `MS_RDONLY`.
pub const MS_RDONLY: c_ulong = 1;
/// `MS_NOSUID`.
pub const MS_NOSUID: c_ulong = 2;
/// `MS_NODEV`.
pub const MS_NODEV: c_ulong = 4;
/// `MS_NOEXEC`.
pub const MS_NOEXEC: c_ulong = 8;
/// `MS_REMOUNT`.
pub const MS_REMOUNT: c_ulong = 32;
/// `MS_BIND`.
pub const MS_BIND: c_ulong = 4096;
/// `MS_REC`.
pub const MS_REC: c_ulong = 16384;
/// `MS_PRIVATE`.
pub const MS_PRIVATE: c_ulong = 1 << 18;

/// `SIGCHLD`.
pub const SIGCHLD: c_int = 17;
/// The signals init does not pass on to the command: SIGKILL and SIGSTOP (it cannot catch
/// them), SIGPIPE and SIGCHLD (its own), and the C library's two below SIGRTMIN.
const KEPT_SIGNALS: [c_int; 6] = [9, 13, 17, 19, 32, 33];

/// The signals init passes on to the command: every other one from 1 to 64 (SIGRTMAX), so
/// that a user's Signal request reaches the command whatever it is.
pub fn forwarded_signals() -> Vec<c_int> {
    (1..=64).filter(|signal| !KEPT_SIGNALS.contains(signal)).collect()
}

const MNT_DETACH: c_int = 2;
const PR_SET_DUMPABLE: c_int = 4;
const PR_CAPBSET_DROP: c_int = 24;
const PR_SET_NO_NEW_PRIVS: c_int = 38;
const PR_SET_SECCOMP: c_int = 22;
const SECCOMP_MODE_FILTER: c_ulong = 2;
const CLONE_NEWCGROUP: c_int = 0x0200_0000;
const CLOSE_RANGE_CLOEXEC: c_int = 4;
const F_GETFD: c_int = 1;
const SIOCGIFFLAGS: c_ulong = 0x8913;
const SIOCSIFFLAGS: c_ulong = 0x8914;
const IFF_UP: i16 = 1;
const SIG_BLOCK: c_int = 0;
const SIGPIPE: c_int = 13;
const POSIX_SPAWN_SETSIGDEF: i16 = 4;
const POSIX_SPAWN_SETSIGMASK: i16 = 8;
/// glibc's.
const POSIX_SPAWN_SETSID: i16 = 0x80;
const O_RDWR: c_int = 2;
const SFD_CLOEXEC: c_int = 0o2_000_000;
/// `struct signalfd_siginfo`'s size.
const SIGNALFD_INFO_LEN: usize = 128;
/// `poll`'s events.
pub const POLLIN: i16 = 1;
/// Writable.
pub const POLLOUT: i16 = 4;
// The tty ioctls, as x86, arm64 and riscv number them.
const TIOCSWINSZ: c_ulong = 0x5414;
const TIOCGPTN: c_ulong = 0x8004_5430;
const TIOCSPTLCK: c_ulong = 0x4004_5431;
const WNOHANG: c_int = 1;
/// prctl's unused arguments: variadic, so they must be passed at their full width.
const UNUSED: c_ulong = 0;
#[cfg(target_arch = "x86_64")]
const SYS_PIVOT_ROOT: c_long = 155;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64", target_arch = "loongarch64"))]
const SYS_PIVOT_ROOT: c_long = 41;

/// glibc's `sigset_t`: 1024 bits.
#[repr(C)]
#[derive(Debug)]
pub struct SignalSet([c_ulong; 16]);

/// `struct sock_fprog`: a BPF program's length and its instructions.
#[repr(C)]
struct FilterProgram {
    len: u16,
    filter: *const u8,
}

/// `struct winsize`.
#[repr(C)]
struct WindowSize {
    rows: u16,
    cols: u16,
    x_pixels: u16,
    y_pixels: u16,
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PollFd {
    /// The fd.
    pub fd: c_int,
    /// What to wait for.
    pub events: i16,
    /// What happened.
    pub revents: i16,
}

/// `struct ifreq` with its flags member (40 bytes).
#[repr(C)]
struct InterfaceFlags {
    name: [u8; 16],
    flags: i16,
    padding: [u8; 22],
}

unsafe extern "C" {
    fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    fn umount2(target: *const c_char, flags: c_int) -> c_int;
    fn syscall(number: c_long, ...) -> c_long;
    fn sethostname(name: *const c_char, len: usize) -> c_int;
    fn prctl(option: c_int, ...) -> c_int;
    fn unshare(flags: c_int) -> c_int;
    fn close_range(first: u32, last: u32, flags: c_int) -> c_int;
    #[link_name = "close"]
    fn close_fd(fd: c_int) -> c_int;
    fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    fn kill(pid: i32, signal: c_int) -> c_int;
    fn waitpid(pid: i32, status: *mut c_int, options: c_int) -> i32;
    fn sigemptyset(set: *mut SignalSet) -> c_int;
    fn sigaddset(set: *mut SignalSet, signal: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SignalSet, old: *mut SignalSet) -> c_int;
    static environ: *const *const c_char;
    fn posix_spawnattr_init(attributes: *mut SpawnAttributes) -> c_int;
    fn posix_spawnattr_setflags(attributes: *mut SpawnAttributes, flags: i16) -> c_int;
    fn posix_spawnattr_setsigmask(attributes: *mut SpawnAttributes, set: *const SignalSet)
    -> c_int;
    fn posix_spawnattr_setsigdefault(
        attributes: *mut SpawnAttributes,
        set: *const SignalSet,
    ) -> c_int;
    fn posix_spawnattr_destroy(attributes: *mut SpawnAttributes) -> c_int;
    fn posix_spawn_file_actions_init(actions: *mut FileActions) -> c_int;
    fn posix_spawn_file_actions_addopen(
        actions: *mut FileActions,
        fd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: u32,
    ) -> c_int;
    fn posix_spawn_file_actions_adddup2(actions: *mut FileActions, fd: c_int, new: c_int) -> c_int;
    fn posix_spawn_file_actions_destroy(actions: *mut FileActions) -> c_int;
    fn signalfd(fd: c_int, set: *const SignalSet, flags: c_int) -> c_int;
    fn poll(fds: *mut PollFd, count: c_ulong, timeout: c_int) -> c_int;
    fn posix_spawn(
        pid: *mut i32,
        path: *const c_char,
        file_actions: *const FileActions,
        attributes: *const SpawnAttributes,
        argv: *const *const c_char,
        envp: *const *const c_char,
    ) -> c_int;
}

/// The result of a call that returns -1 and sets errno on failure.
fn check(ret: c_int) -> io::Result<()> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A file descriptor the engine handed over (the report pipe as 3, the go pipe as 4).
pub fn inherited(fd: c_int) -> File {
    // SAFETY: the engine dup'ed a pipe to this fd for init alone; nothing else in this
    // process owns it, and each caller takes it once.
    unsafe { File::from_raw_fd(fd) }
}

/// Closes `fd` (open or not).
pub fn close(fd: c_int) {
    // SAFETY: only the engine's handed fds are closed this way, which nothing else in this
    // process owns.
    unsafe { close_fd(fd) };
}

/// Whether `fd` is open.
pub fn is_open(fd: c_int) -> bool {
    // SAFETY: F_GETFD only reads the flags of an fd number, whichever file it is.
    unsafe { fcntl(fd, F_GETFD) != -1 }
}

/// mount(2); `None` passes NULL.
pub fn mount_fs(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let pointer = |text: Option<&CStr>| text.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    check(unsafe {
        mount(pointer(source), target.as_ptr(), pointer(fstype), flags, pointer(data).cast())
    })
}

/// umount2(MNT_DETACH): detaches the mount at `target` and everything below it.
pub fn detach(target: &CStr) -> io::Result<()> {
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(unsafe { umount2(target.as_ptr(), MNT_DETACH) })
}

/// pivot_root(2).
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: pivot_root takes two NUL-terminated strings, which outlive the call.
    let ret = unsafe { syscall(SYS_PIVOT_ROOT, new_root.as_ptr(), put_old.as_ptr()) };
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// sethostname(2).
pub fn set_hostname(name: &[u8]) -> io::Result<()> {
    // SAFETY: the kernel reads `name.len()` bytes from `name`, which outlives the call.
    check(unsafe { sethostname(name.as_ptr().cast(), name.len()) })
}

/// Brings the loopback interface up (a no-op when it already is).
pub fn loopback_up() -> io::Result<()> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
    let mut request = InterfaceFlags { name: [0; 16], flags: 0, padding: [0; 22] };
    request.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq it is given, which lives on this
    // stack frame and has the kernel's layout.
    check(unsafe { ioctl(socket.as_raw_fd(), SIOCGIFFLAGS, &raw mut request) })?;
    if request.flags & IFF_UP != 0 {
        return Ok(());
    }
    request.flags |= IFF_UP;
    // SAFETY: as above; SIOCSIFFLAGS only reads the ifreq.
    check(unsafe { ioctl(socket.as_raw_fd(), SIOCSIFFLAGS, &raw const request) })
}

/// PR_SET_NO_NEW_PRIVS: neither the command nor anything it runs gains privileges.
pub fn no_new_privs() -> io::Result<()> {
    // SAFETY: this prctl takes plain integers.
    check(unsafe { prctl(PR_SET_NO_NEW_PRIVS, c_ulong::from(1u8), UNUSED, UNUSED, UNUSED) })
}

/// Drops `capability` from the bounding set.
pub fn drop_capability(capability: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is passed.
    check(unsafe { prctl(PR_CAPBSET_DROP, c_ulong::from(capability), UNUSED, UNUSED, UNUSED) })
}

/// Installs a seccomp filter (its instructions, in the kernel's layout) on this process and
/// everything it starts from now on. Needs no_new_privs first.
pub fn install_seccomp_filter(instructions: &[u8]) -> io::Result<()> {
    let len = instructions.len() / rrocker_init::filters::INSTRUCTION_LEN;
    let program = FilterProgram {
        len: u16::try_from(len).map_err(|_| io::Error::from_raw_os_error(22))?,
        filter: instructions.as_ptr(),
    };
    // SAFETY: the kernel copies `len` 8-byte instructions from `filter`, which points into
    // `instructions` (long enough: `len` is its length in instructions), before returning.
    check(unsafe { prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &raw const program, UNUSED, UNUSED) })
}

/// PR_SET_DUMPABLE 0: init's memory and /proc entries are out of the command's reach.
pub fn non_dumpable() -> io::Result<()> {
    // SAFETY: this prctl takes plain integers.
    check(unsafe { prctl(PR_SET_DUMPABLE, UNUSED, UNUSED, UNUSED, UNUSED) })
}

/// A new cgroup namespace rooted at the cgroups init is in.
pub fn unshare_cgroup_namespace() -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    check(unsafe { unshare(CLONE_NEWCGROUP) })
}

/// Marks every fd above stderr close-on-exec (the report pipe among them), so that only
/// 0, 1 and 2 reach the command.
pub fn only_stdio_on_exec() -> io::Result<()> {
    // SAFETY: close_range takes plain integers; CLOSE_RANGE_CLOEXEC only sets flags.
    check(unsafe { close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC) })
}

/// glibc's `posix_spawnattr_t` (336 bytes on 64-bit targets; room to spare).
#[repr(C)]
struct SpawnAttributes([u64; 64]);

/// glibc's `posix_spawn_file_actions_t` (80 bytes on 64-bit targets; room to spare).
#[repr(C)]
struct FileActions([u64; 16]);

/// Starts `program` with `argv` and init's environment, with no signal blocked and the
/// forwarded ones (and SIGPIPE, SIGCHLD) at their default disposition, by posix_spawn (a
/// vfork-style clone: cheaper than fork); returns its pid once its exec succeeded, or the
/// error of that exec. With a `terminal` (a pty's slave), the command leads a new session
/// whose controlling terminal that is, as its stdin, stdout and stderr.
pub fn spawn(program: &CStr, argv: &[CString], terminal: Option<&CStr>) -> io::Result<i32> {
    let mut pointers: Vec<*const c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let unblocked = SignalSet::of(&[]);
    let mut defaults = forwarded_signals();
    defaults.extend([SIGCHLD, SIGPIPE]);
    let defaults = SignalSet::of(&defaults);
    let mut attributes = SpawnAttributes([0; 64]);
    let mut actions = FileActions([0; 16]);
    let mut flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if terminal.is_some() {
        flags |= POSIX_SPAWN_SETSID;
    }
    let mut pid: i32 = 0;
    // SAFETY: the attributes and file actions are initialised before use and destroyed
    // after; every pointer passed (sets, program, the terminal's path, the NULL-terminated
    // argv of live CStrings, `environ`) outlives the calls; posix_spawn writes only `pid`.
    // The child sets its session up before its file actions, so that the slave it opens
    // (without O_NOCTTY) becomes its controlling terminal.
    let error = unsafe {
        let attributes = &raw mut attributes;
        let actions = &raw mut actions;
        posix_spawnattr_init(attributes);
        posix_spawnattr_setflags(attributes, flags);
        posix_spawnattr_setsigmask(attributes, &raw const unblocked);
        posix_spawnattr_setsigdefault(attributes, &raw const defaults);
        posix_spawn_file_actions_init(actions);
        if let Some(slave) = terminal {
            posix_spawn_file_actions_addopen(actions, 0, slave.as_ptr(), O_RDWR, 0);
            posix_spawn_file_actions_adddup2(actions, 0, 1);
            posix_spawn_file_actions_adddup2(actions, 0, 2);
        }
        let error = posix_spawn(
            &raw mut pid,
            program.as_ptr(),
            actions,
            attributes,
            pointers.as_ptr(),
            environ,
        );
        posix_spawn_file_actions_destroy(actions);
        posix_spawnattr_destroy(attributes);
        error
    };
    if error == 0 { Ok(pid) } else { Err(io::Error::from_raw_os_error(error)) }
}

/// Unlocks a pty master's slave and returns its number (`/dev/pts/N`).
pub fn unlock_pty(master: &File) -> io::Result<u32> {
    let unlock: c_int = 0;
    let mut number: u32 = 0;
    // SAFETY: TIOCSPTLCK reads an int and TIOCGPTN writes an unsigned int, each from or into
    // a local that outlives the call.
    unsafe {
        check(ioctl(master.as_raw_fd(), TIOCSPTLCK, &raw const unlock))?;
        check(ioctl(master.as_raw_fd(), TIOCGPTN, &raw mut number))?;
    }
    Ok(number)
}

/// Sets a terminal's window size (on a pty master: its slave's, whose foreground process
/// group gets SIGWINCH when it changes).
pub fn set_window_size(terminal: &File, rows: u16, cols: u16) -> io::Result<()> {
    let size = WindowSize { rows, cols, x_pixels: 0, y_pixels: 0 };
    // SAFETY: TIOCSWINSZ reads a struct winsize, which lives on this stack frame.
    check(unsafe { ioctl(terminal.as_raw_fd(), TIOCSWINSZ, &raw const size) })
}

/// Waits until one of `fds` is ready, or `timeout_ms` passes (-1: no timeout); interrupted
/// waits count as nothing ready.
pub fn wait_ready(fds: &mut [PollFd], timeout_ms: c_int) -> io::Result<usize> {
    let count = c_ulong::try_from(fds.len()).unwrap_or(c_ulong::MAX);
    // SAFETY: poll writes only the `revents` of the `count` pollfds it is given, which
    // live in `fds`.
    match unsafe { poll(fds.as_mut_ptr(), count, timeout_ms) } {
        -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => Ok(0),
        -1 => Err(io::Error::last_os_error()),
        ready => Ok(usize::try_from(ready).unwrap_or(0)),
    }
}

/// A signal as a signalfd reads it: its number, its code and the value it was queued with.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedSignal {
    /// The signal.
    pub number: c_int,
    /// `si_code`.
    pub code: c_int,
    /// `si_int`.
    pub value: i32,
}

/// A signalfd of blocked signals.
#[derive(Debug)]
pub struct SignalFd(File);

impl SignalFd {
    /// A signalfd of `set`, which must be blocked.
    pub fn new(set: &SignalSet) -> io::Result<Self> {
        // SAFETY: signalfd reads the set, which outlives the call; the fd it returns is new
        // and owned by the File alone.
        let fd = unsafe { signalfd(-1, set, SFD_CLOEXEC) };
        check(fd)?;
        // SAFETY: as above, `fd` is a new open file nothing else owns.
        Ok(Self(unsafe { File::from_raw_fd(fd) }))
    }

    /// Its fd, to poll.
    pub fn fd(&self) -> c_int {
        self.0.as_raw_fd()
    }

    /// The next pending signal (blocks until there is one).
    pub fn next(&mut self) -> io::Result<ReceivedSignal> {
        use std::io::Read;
        let mut info = [0u8; SIGNALFD_INFO_LEN];
        self.0.read_exact(&mut info)?;
        let field = |offset: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&info[offset..offset + 4]);
            bytes
        };
        Ok(ReceivedSignal {
            number: c_int::from_ne_bytes(field(0)),
            code: c_int::from_ne_bytes(field(8)),
            value: i32::from_ne_bytes(field(44)),
        })
    }
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: i32, signal: c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { kill(pid, signal) })
}

/// Reaps one ended child: its pid and wait status, or `None` when none has ended.
pub fn reap_any() -> Option<(i32, c_int)> {
    let mut status: c_int = 0;
    // SAFETY: waitpid writes the status into the local it is given.
    let pid = unsafe { waitpid(-1, &raw mut status, WNOHANG) };
    (pid > 0).then_some((pid, status))
}

impl SignalSet {
    /// The set of `signals`.
    pub fn of(signals: &[c_int]) -> Self {
        let mut set = Self([0; 16]);
        // SAFETY: both write into `set`, which has glibc's sigset_t layout; the signal numbers
        // are valid, so neither can fail.
        unsafe {
            sigemptyset(&raw mut set);
            for signal in signals {
                sigaddset(&raw mut set, *signal);
            }
        }
        set
    }

    /// Blocks the set's signals, so that they wait for a [`SignalFd`] (init is single-threaded).
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: sigprocmask reads the set, which outlives the call; no old set is asked for.
        check(unsafe { sigprocmask(SIG_BLOCK, self, std::ptr::null_mut()) })
    }
}
