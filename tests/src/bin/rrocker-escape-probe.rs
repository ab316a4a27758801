//! Test helper copied into a task's image: tries, from inside a task, what would break out of
//! it or weaken its limits, and prints one line per attempt: `NAME: refused ERRNO`,
//! `NAME: contained` or `NAME: ALLOWED`.
//!
//! `rrocker-escape-probe HOST_PATH PORT SOCKET`: HOST_PATH exists on the host only (the
//! chroot escape looks for it), PORT is the daemon's TCP port on the host's 127.0.0.1, SOCKET
//! the name of an abstract unix socket listening in the host's network namespace.

use std::ffi::CString;
use std::io::{self, Write};
use std::net::TcpStream;

fn main() {
    let mut args = std::env::args().skip(1);
    let host_path = args.next().expect("usage: rrocker-escape-probe HOST_PATH PORT SOCKET");
    let port: u16 = args.next().and_then(|port| port.parse().ok()).expect("a port");
    let socket = args.next().expect("an abstract socket name");
    report("proc-sys", write_file("/proc/sys/kernel/core_pattern", "|/tmp/x"));
    report("sysrq", write_file("/proc/sysrq-trigger", "h"));
    // SAFETY: finit_module with fd -1 loads nothing; the kernel checks the capability first.
    report("module", check(unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) }));
    report("mknod", mknod_null());
    report("mount-disk", mount("/dev/vda", "/tmp", "ext4"));
    report("mount-cgroupfs", mount("none", "/tmp", "cgroup2"));
    report("mount-sysfs", mount("sysfs", "/tmp", "sysfs"));
    report("cgroup-limit", write_file("/sys/fs/cgroup/pids.max", "max"));
    // SAFETY: BPF_PROG_LOAD (5) with a NULL attribute: the kernel checks permission first.
    report("bpf", check(unsafe { libc::syscall(libc::SYS_bpf, 5, std::ptr::null::<u8>(), 0) }));
    report("syslog", check(read_kernel_log()));
    // SAFETY: LINUX_REBOOT_CMD_CAD_OFF only flips Ctrl-Alt-Del handling, if it is allowed.
    report("reboot", check(i64::from(unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_CAD_OFF) })));
    report("daemon-port", TcpStream::connect(("127.0.0.1", port)).map(drop));
    report("abstract-socket", connect_abstract(&socket));
    println!("chroot-escape: {}", chroot_escape(&host_path));
    let _ = io::stdout().flush();
}

fn report(name: &str, result: io::Result<()>) {
    match result {
        Ok(()) => println!("{name}: ALLOWED"),
        Err(error) => println!("{name}: refused {}", error.raw_os_error().unwrap_or(0)),
    }
}

fn check(ret: i64) -> io::Result<()> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn write_file(path: &str, contents: &str) -> io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(contents.as_bytes())
}

fn mknod_null() -> io::Result<()> {
    // SAFETY: mknod of a character device at a path of our own; makedev takes integers.
    check(i64::from(unsafe {
        libc::mknod(c"/tmp/null2".as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3))
    }))
}

fn mount(source: &str, target: &str, fstype: &str) -> io::Result<()> {
    let [source, target, fstype] =
        [source, target, fstype].map(|text| CString::new(text).expect("no NUL"));
    // SAFETY: three NUL-terminated strings that outlive the call, and no data.
    check(i64::from(unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null())
    }))
}

fn connect_abstract(name: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    std::os::unix::net::UnixStream::connect_addr(&address).map(drop)
}

/// syslog(SYSLOG_ACTION_READ_ALL).
fn read_kernel_log() -> i64 {
    let mut buffer = [0u8; 256];
    // SAFETY: the kernel writes at most `buffer.len()` bytes into `buffer`.
    i64::from(unsafe { libc::klogctl(3, buffer.as_mut_ptr().cast(), 256) })
}

/// The classic chroot escape: chroot into a subdirectory, climb `..` far past it, chroot to
/// where that ends. Contained if the host's file is still not to be seen.
fn chroot_escape(host_path: &str) -> &'static str {
    let inner = c"/tmp/escape";
    let climbed = (|| -> io::Result<bool> {
        std::fs::create_dir_all("/tmp/escape")?;
        std::env::set_current_dir("/")?;
        // SAFETY: chroot takes a NUL-terminated path that outlives the call.
        check(i64::from(unsafe { libc::chroot(inner.as_ptr()) }))?;
        for _ in 0..64 {
            std::env::set_current_dir("..")?;
        }
        // SAFETY: as above.
        check(i64::from(unsafe { libc::chroot(c".".as_ptr()) }))?;
        Ok(std::path::Path::new(host_path).exists())
    })();
    match climbed {
        Ok(false) => "contained",
        Ok(true) => "ESCAPED",
        Err(_) => "refused",
    }
}
