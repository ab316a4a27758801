//! Seccomp profiles in docker's JSON format (`defaultAction`, `defaultErrnoRet`, `syscalls`
//! entries with `names`, `action`, `errnoRet`, `args`, `includes` and `excludes`), resolved
//! for this machine: the syscall names of its architecture, the capabilities a task keeps
//! ([`rrocker_init::capabilities`]) and the running kernel. Pure: no I/O but the text given.
//!
//! A name that no architecture knows is an error (a typo would otherwise widen or narrow
//! the filter silently); a name known only on other architectures is left out, as docker
//! does, since its profiles list them all. `architectures`, `archMap`, `flags` and
//! `comment` are read over: a task's filter answers for its own architecture only, and any
//! other ABI is refused whatever the profile says (see [`super::bpf`]).

use std::collections::BTreeMap;

use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use serde::Deserialize;

use super::SeccompError;

/// A profile resolved for this machine: what a syscall matching no rule gets, and for each
/// other action the syscalls that get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The action for syscalls no rule matches.
    pub default: SeccompAction,
    /// Each action a rule asks for, with its syscalls by number.
    pub actions: Vec<(SeccompAction, BTreeMap<i64, Match>)>,
}

/// When a rule applies to its syscall.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// Whatever its arguments.
    Always,
    /// When one of these rules (each a conjunction of argument checks) holds.
    AnyOf(Vec<SeccompRule>),
}

/// A profile file, as docker writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Option<Vec<DockerRule>>,
}

/// One `syscalls` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerRule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<DockerArg>>,
    #[serde(default)]
    includes: Option<DockerFilter>,
    #[serde(default)]
    excludes: Option<DockerFilter>,
}

/// An argument check: `op` compares argument `index` with `value` (with MASKED_EQ, `value`
/// is the mask and `valueTwo` what the masked argument must equal).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// When an entry applies: on these architectures, with these capabilities, from this kernel.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerFilter {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What the profile is resolved for.
#[derive(Debug, Clone, Copy)]
pub struct Machine<'a> {
    /// docker's names of this architecture (`amd64`, `x86_64`...).
    pub arch_names: &'a [&'a str],
    /// The running kernel's release (`6.18.4-...`).
    pub kernel: (u32, u32),
    /// The syscall number of a name on this architecture.
    pub native: fn(&str) -> Option<i64>,
    /// Whether any architecture has a syscall of that name.
    pub known: fn(&str) -> bool,
}

impl Machine<'static> {
    /// The machine this daemon runs on.
    pub fn this(kernel_release: &str) -> Self {
        Self { arch_names: ARCH_NAMES, kernel: kernel_version(kernel_release), native, known }
    }
}

#[cfg(target_arch = "x86_64")]
const ARCH_NAMES: &[&str] = &["amd64", "x86_64", "SCMP_ARCH_X86_64"];
#[cfg(target_arch = "aarch64")]
const ARCH_NAMES: &[&str] = &["arm64", "aarch64", "SCMP_ARCH_AARCH64"];
#[cfg(target_arch = "riscv64")]
const ARCH_NAMES: &[&str] = &["riscv64", "SCMP_ARCH_RISCV64"];

/// The syscall number of `name` on this architecture.
fn native(name: &str) -> Option<i64> {
    name.parse::<syscalls::Sysno>().ok().map(|sysno| i64::from(sysno.id()))
}

/// Whether some architecture has a syscall named `name`.
fn known(name: &str) -> bool {
    use std::str::FromStr;
    fn on<T: FromStr>(name: &str) -> bool {
        T::from_str(name).is_ok()
    }
    [
        on::<syscalls::x86_64::Sysno>,
        on::<syscalls::x86::Sysno>,
        on::<syscalls::aarch64::Sysno>,
        on::<syscalls::arm::Sysno>,
        on::<syscalls::riscv64::Sysno>,
        on::<syscalls::riscv32::Sysno>,
        on::<syscalls::s390x::Sysno>,
        on::<syscalls::powerpc::Sysno>,
        on::<syscalls::powerpc64::Sysno>,
        on::<syscalls::mips::Sysno>,
        on::<syscalls::mips64::Sysno>,
        on::<syscalls::loongarch64::Sysno>,
        on::<syscalls::sparc::Sysno>,
        on::<syscalls::sparc64::Sysno>,
    ]
    .iter()
    .any(|has| has(name))
        // Private to arm (libseccomp's names; the table has them as __ARM_NR_*).
        || ["breakpoint", "cacheflush", "set_tls", "usr26", "usr32"].contains(&name)
}

/// `major.minor` of a kernel release; `(0, 0)` if it has none.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|part| part.parse().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

/// Parses a profile in docker's format and resolves it for `machine`.
pub fn parse(text: &str, machine: Machine<'_>) -> Result<Profile, SeccompError> {
    let profile: DockerProfile =
        serde_json::from_str(text).map_err(|error| SeccompError::Malformed(error.to_string()))?;
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let mut actions: Vec<(SeccompAction, BTreeMap<i64, Match>)> = Vec::new();
    for rule in profile.syscalls.unwrap_or_default() {
        let names: Vec<String> =
            rule.names.clone().unwrap_or_default().into_iter().chain(rule.name.clone()).collect();
        if names.is_empty() {
            return Err(SeccompError::Malformed("a syscalls entry names no syscall".into()));
        }
        if let Some(unknown) = names.iter().find(|name| !(machine.known)(name)) {
            return Err(SeccompError::UnknownSyscall(unknown.clone()));
        }
        let action = action(&rule.action, rule.errno_ret)?;
        let conditions = conditions(rule.args.as_deref().unwrap_or_default())?;
        if !applies(&rule, machine)? {
            continue;
        }
        let index = match actions.iter().position(|(known, _)| *known == action) {
            Some(index) => index,
            None => {
                actions.push((action, BTreeMap::new()));
                actions.len() - 1
            }
        };
        let syscalls = &mut actions[index].1;
        for number in names.iter().filter_map(|name| (machine.native)(name)) {
            let entry = syscalls.entry(number).or_insert_with(|| Match::AnyOf(Vec::new()));
            match (entry, &conditions) {
                (Match::Always, _) => {}
                (entry, None) => *entry = Match::Always,
                (Match::AnyOf(rules), Some(rule)) => rules.push(rule.clone()),
            }
        }
    }
    Ok(Profile { default, actions })
}

/// An entry's action.
fn action(name: &str, errno: Option<u32>) -> Result<SeccompAction, SeccompError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno.unwrap_or(0)),
        other => return Err(SeccompError::UnknownAction(other.to_owned())),
    })
}

/// An entry's argument checks as one rule, or `None` if it has none.
fn conditions(args: &[DockerArg]) -> Result<Option<SeccompRule>, SeccompError> {
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args
        .iter()
        .map(|arg| {
            let (op, value) = match arg.op.as_str() {
                "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
                "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
                "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
                "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
                "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
                "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
                "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
                other => return Err(SeccompError::UnknownOperator(other.to_owned())),
            };
            SeccompCondition::new(arg.index, SeccompCmpArgLen::Qword, op, value)
                .map_err(|error| SeccompError::Malformed(error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    SeccompRule::new(conditions)
        .map(Some)
        .map_err(|error| SeccompError::Malformed(error.to_string()))
}

/// Whether an entry applies on `machine` (docker's rules: `includes` needs the architecture
/// among its arches, every one of its caps, and at least its kernel; `excludes` drops the
/// entry on one of its arches or with one of its caps).
fn applies(rule: &DockerRule, machine: Machine<'_>) -> Result<bool, SeccompError> {
    let on_this_arch =
        |arches: &[String]| arches.iter().any(|arch| machine.arch_names.contains(&arch.as_str()));
    if let Some(includes) = &rule.includes {
        let arches = includes.arches.as_deref().unwrap_or_default();
        let caps = includes.caps.as_deref().unwrap_or_default();
        if !arches.is_empty() && !on_this_arch(arches) {
            return Ok(false);
        }
        if !caps.iter().all(|cap| rrocker_init::capabilities::is_kept(cap)) {
            return Ok(false);
        }
        if let Some(min_kernel) = &includes.min_kernel {
            let wanted = kernel_version(min_kernel);
            if wanted == (0, 0) {
                return Err(SeccompError::Malformed(format!("minKernel '{min_kernel}'")));
            }
            if machine.kernel < wanted {
                return Ok(false);
            }
        }
    }
    if let Some(excludes) = &rule.excludes {
        if on_this_arch(excludes.arches.as_deref().unwrap_or_default()) {
            return Ok(false);
        }
        let caps = excludes.caps.as_deref().unwrap_or_default();
        if caps.iter().any(|cap| rrocker_init::capabilities::is_kept(cap)) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine<'static> {
        Machine {
            arch_names: &["amd64", "x86_64"],
            kernel: (6, 1),
            native: |name| match name {
                "read" => Some(0),
                "write" => Some(1),
                "clone" => Some(56),
                "clone3" => Some(435),
                _ => None,
            },
            known: |name| ["read", "write", "clone", "clone3", "_llseek"].contains(&name),
        }
    }

    fn parsed(text: &str) -> Result<Profile, SeccompError> {
        parse(text, machine())
    }

    #[test]
    fn actions_group_their_syscalls_and_names_of_other_arches_are_left_out() {
        let profile = parsed(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
                {"names": ["read", "write", "_llseek"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#,
        )
        .expect("parses");
        assert_eq!(profile.default, SeccompAction::Errno(1));
        let allowed: Vec<i64> = profile.actions[0].1.keys().copied().collect();
        assert_eq!((profile.actions[0].0.clone(), allowed), (SeccompAction::Allow, vec![0, 1]));
        assert_eq!(profile.actions[1].0, SeccompAction::Errno(38));
        assert_eq!(profile.actions[1].1.get(&435), Some(&Match::Always));
    }

    #[test]
    fn argument_checks_make_alternative_rules_and_an_unconditional_rule_wins() {
        let profile = parsed(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["clone", "read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}]},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .expect("parses");
        let allowed = &profile.actions[0].1;
        assert!(matches!(allowed.get(&56), Some(Match::AnyOf(rules)) if rules.len() == 2));
        assert_eq!(allowed.get(&0), Some(&Match::Always));
        assert_eq!(profile.default, SeccompAction::Errno(libc::EPERM as u32));
    }

    #[test]
    fn includes_and_excludes_follow_dockers_rules() {
        let profile = parsed(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.2"}},
                {"names": ["read"], "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_CHOWN"], "arches": ["amd64"], "minKernel": "4.8"}},
                {"names": ["write"], "action": "SCMP_ACT_LOG", "excludes": {"caps": ["CAP_KILL"]}}]}"#,
        )
        .expect("parses");
        let allowed: Vec<i64> = profile.actions[0].1.keys().copied().collect();
        assert_eq!(allowed, [56], "only clone: no CAP_SYS_ADMIN, not s390x, kernel 6.1");
        let logged: Vec<i64> = profile.actions[1].1.keys().copied().collect();
        assert_eq!(logged, [0]);
    }

    #[test]
    fn bad_profiles_are_refused_naming_what_is_wrong() {
        let error = |text: &str| parsed(text).expect_err("refused").to_string();
        assert!(error("{").starts_with("malformed profile"), "{}", error("{"));
        let unknown = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mkdri"], "action": "SCMP_ACT_ALLOW"}]}"#;
        assert_eq!(error(unknown), "unknown syscall 'mkdri'");
        let action = r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#;
        assert_eq!(error(action), "unknown or unsupported action 'SCMP_ACT_NOTIFY'");
        let op = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]}"#;
        assert_eq!(error(op), "unknown argument comparison 'SCMP_CMP_XX'");
        let index = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#;
        assert!(error(index).starts_with("malformed profile"));
        let nameless =
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#;
        assert_eq!(error(nameless), "malformed profile: a syscalls entry names no syscall");
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1045"), (6, 18));
        assert_eq!(kernel_version("4.8"), (4, 8));
        assert_eq!(kernel_version("x"), (0, 0));
    }

    #[test]
    fn this_machine_knows_its_own_names_and_every_arches() {
        let this = Machine::this("6.18.0");
        assert!((this.native)("read").is_some());
        assert!((this.known)("_llseek") && (this.known)("socketcall") && (this.known)("set_tls"));
        assert!(!(this.known)("mkdri"));
    }
}
