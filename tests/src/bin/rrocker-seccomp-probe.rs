//! Test helper copied into a task's image: tries, from inside a task, the kernel surfaces a
//! container's seccomp filter must refuse, each in a child of its own (so that an attempt
//! that works changes nothing for the next), and prints one line per attempt:
//! `NAME: refused ERRNO`, `NAME: ALLOWED` or `NAME: killed SIGNAL`.
//!
//! `rrocker-seccomp-probe` alone tries them all; `rrocker-seccomp-probe ordinary` instead
//! runs what every program does (threads, then a child process it forks and execs) and
//! prints `ordinary: ok`.

use std::io::{self, Write};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("ordinary") {
        ordinary();
        return;
    }
    for (name, attempt) in ATTEMPTS {
        let _ = io::stdout().flush();
        println!("{name}: {}", in_child(*attempt));
    }
    let _ = io::stdout().flush();
}

/// An attempt: 0 if it worked, else its errno.
type Attempt = fn() -> i32;

/// Every attempt, by name.
const ATTEMPTS: &[(&str, Attempt)] = &[
    ("io_uring_setup", io_uring_setup),
    ("keyctl-join", || {
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with NULL joins an anonymous keyring.
        errno_of(unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<u8>()) })
    }),
    ("add_key", || {
        // SAFETY: NUL-terminated strings and a one-byte payload that outlive the call.
        errno_of(unsafe {
            libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"rrocker-probe".as_ptr(),
                c"x".as_ptr(),
                1usize,
                -2i32, // KEY_SPEC_PROCESS_KEYRING
            )
        })
    }),
    ("request_key", || {
        // SAFETY: NUL-terminated strings that outlive the call, no callout, no keyring.
        errno_of(unsafe {
            libc::syscall(
                libc::SYS_request_key,
                c"user".as_ptr(),
                c"rrocker-probe".as_ptr(),
                std::ptr::null::<u8>(),
                0,
            )
        })
    }),
    ("unshare-user", || unshare(libc::CLONE_NEWUSER)),
    ("unshare-net", || unshare(libc::CLONE_NEWNET)),
    ("nested-tmpfs", || {
        let namespaces = unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
        if namespaces != 0 {
            return namespaces;
        }
        // SAFETY: NUL-terminated strings that outlive the call, and no data.
        errno_of(i64::from(unsafe {
            libc::mount(c"none".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null())
        }))
    }),
    ("clone-newuser", clone_new_user),
    ("clone3", clone3),
    ("fsopen", || {
        // SAFETY: a NUL-terminated file system name and no flags.
        errno_of(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0) })
    }),
    ("open_tree", || {
        // SAFETY: OPEN_TREE_CLONE of "/" relative to the working directory: a detached copy.
        errno_of(unsafe {
            libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/".as_ptr(), 1 /* CLONE */)
        })
    }),
    ("bpf", || {
        // SAFETY: BPF_MAP_CREATE (0) with a NULL attribute: nothing is read.
        errno_of(unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0) })
    }),
    ("perf_event_open", perf_event_open),
    ("userfaultfd", || {
        // SAFETY: userfaultfd takes flags only.
        errno_of(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) })
    }),
    ("socket-alg", || socket(libc::AF_ALG, libc::SOCK_SEQPACKET)),
    ("socket-vsock", || socket(libc::AF_VSOCK, libc::SOCK_STREAM)),
    ("personality-read-implies-exec", || {
        // SAFETY: personality takes a persona only; the child exits right after.
        let persona = unsafe { libc::personality(0x0040_0000) };
        errno_of(i64::from(persona))
    }),
    ("i386-int80", i386_getpid),
    ("x32-syscall", x32_getpid),
];

/// Runs `attempt` in a forked child and says how it went.
fn in_child(attempt: Attempt) -> String {
    // SAFETY: the child only makes raw syscalls and exits; this process is single-threaded.
    match unsafe { libc::fork() } {
        -1 => format!("fork failed: {}", io::Error::last_os_error()),
        0 => {
            let errno = attempt();
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(errno) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child, writing its status into a local.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            if libc::WIFSIGNALED(status) {
                format!("killed {}", libc::WTERMSIG(status))
            } else {
                match libc::WEXITSTATUS(status) {
                    0 => "ALLOWED".to_owned(),
                    errno => format!("refused {errno}"),
                }
            }
        }
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(255)
}

/// 0 for a syscall's success, else its errno.
fn errno_of(ret: i64) -> i32 {
    if ret == -1 { last_errno() } else { 0 }
}

fn unshare(flags: i32) -> i32 {
    // SAFETY: unshare takes flags only; each attempt runs in a child of its own.
    errno_of(i64::from(unsafe { libc::unshare(flags) }))
}

fn io_uring_setup() -> i32 {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup fills `params` (120 bytes: struct io_uring_params).
    errno_of(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) })
}

fn clone_new_user() -> i32 {
    let flags = libc::CLONE_NEWUSER | libc::SIGCHLD;
    // SAFETY: a fork-like clone (no new stack, no shared memory); the child exits at once.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    match pid {
        -1 => last_errno(),
        // SAFETY: leaves the new child at once.
        0 => unsafe { libc::_exit(0) },
        _ => 0,
    }
}

fn clone3() -> i32 {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls (64 bytes, CLONE_ARGS_SIZE_VER0).
    let mut args = [0u64; 8];
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: a fork-like clone3 of 64 bytes of arguments; the child exits at once.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 64usize) };
    match pid {
        -1 => last_errno(),
        // SAFETY: leaves the new child at once.
        0 => unsafe { libc::_exit(0) },
        _ => 0,
    }
}

fn perf_event_open() -> i32 {
    // struct perf_event_attr, zeroed but for its size (PERF_ATTR_SIZE_VER0: 64): a hardware
    // CPU-cycles counter of this process.
    let mut attr = [0u8; 128];
    attr[4..8].copy_from_slice(&64u32.to_ne_bytes());
    // SAFETY: the kernel reads the attribute's declared size from `attr`.
    errno_of(unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0) })
}

fn socket(family: i32, kind: i32) -> i32 {
    // SAFETY: socket takes integers.
    errno_of(i64::from(unsafe { libc::socket(family, kind, 0) }))
}

/// getpid through the i386 ABI (`int 0x80`, syscall 20 there).
#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i32 {
    let mut ret: i64 = 20;
    // SAFETY: int 0x80 with eax = 20 is the i386 getpid: no memory is read or written; it
    // clobbers only rax and r8-r11 as documented for the compat entry.
    unsafe {
        std::arch::asm!("int 0x80", inout("rax") ret => ret, out("r8") _, out("r9") _, out("r10") _, out("r11") _);
    }
    raw_result(ret)
}

/// getpid through the x32 ABI (syscall number with bit 30 set).
#[cfg(target_arch = "x86_64")]
fn x32_getpid() -> i32 {
    let mut ret: i64 = 0x4000_0000 | 39;
    // SAFETY: the syscall instruction with getpid's x32 number: no memory is touched; rcx and
    // r11 are clobbered by the instruction itself.
    unsafe {
        std::arch::asm!("syscall", inout("rax") ret => ret, out("rcx") _, out("r11") _);
    }
    raw_result(ret)
}

#[cfg(not(target_arch = "x86_64"))]
fn i386_getpid() -> i32 {
    0
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_getpid() -> i32 {
    0
}

/// A raw syscall's return: 0 for success, else the errno it carries.
#[cfg(target_arch = "x86_64")]
fn raw_result(ret: i64) -> i32 {
    if (-4095..0).contains(&ret) { i32::try_from(-ret).unwrap_or(255) } else { 0 }
}

/// Threads, then a child that is forked and execs.
fn ordinary() {
    let threads: Vec<_> = (0..4).map(|n| std::thread::spawn(move || n * 2)).collect();
    let sum: i32 = threads.into_iter().map(|thread| thread.join().expect("a thread")).sum();
    let child = std::process::Command::new("/bin/true").status().expect("fork and exec");
    assert!(sum == 12 && child.success(), "threads {sum}, child {child}");
    println!("ordinary: ok");
}
