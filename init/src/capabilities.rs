//! The capabilities a task's command may hold (as root of its user namespace): what a
//! process manager's root usually needs, the same set container runtimes keep by default.
//! Init drops every other one (modules, raw I/O, ptrace, admin, ...) from the bounding set;
//! the daemon reads the same list when it resolves a seccomp profile's `includes.caps` and
//! `excludes.caps`.

/// The kept capabilities: number and name.
pub const KEPT: [(u32, &str); 14] = [
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// Whether the command keeps the capability named `name` (`CAP_...`).
pub fn is_kept(name: &str) -> bool {
    KEPT.iter().any(|(_, kept)| kept.eq_ignore_ascii_case(name))
}
