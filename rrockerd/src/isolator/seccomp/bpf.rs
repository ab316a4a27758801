//! A resolved [`Profile`] as a stack of BPF programs (the kernel runs every program of a
//! stack and takes the strictest answer):
//!
//! - the *base* program, our own code around seccompiler's: for each syscall that rules name
//!   only unconditionally, its action, as range checks over the sorted syscall numbers
//!   (three instructions per run of consecutive numbers that share an action); for the
//!   syscalls that only conditional rules name, a jump into seccompiler's program of those
//!   rules (ALLOW when one holds, the default action otherwise); the default action for
//!   every syscall no rule names;
//! - one program per action other than ALLOW that conditional rules ask for, compiled by
//!   seccompiler: that action for its syscalls under their rules' argument checks, ALLOW for
//!   the rest.
//!
//! rrocker's default profile is then one program of about 170 instructions. seccompiler
//! alone gives every syscall of a program five instructions in a chain: the whole allow-list
//! was 1,557 instructions, whose conversion and JIT in the kernel cost about 0.8 ms per task
//! (perf: `bpf_convert_filter`, `do_jit`). seccompiler keeps what is easy to get wrong: the
//! 64-bit argument checks and the actions' encoding.
//!
//! Every program starts with our own check of the ABI, before seccompiler's (which would kill
//! the process): a syscall of another architecture (i386 through `int 0x80` on x86_64) or
//! of the x32 ABI (the syscall number's bit 30) answers EPERM whatever the profile says, so
//! that no profile can be bypassed through a second syscall table.

use std::collections::BTreeMap;

use rrocker_init::filters::INSTRUCTION_LEN;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch, sock_filter};

use super::SeccompError;
use super::profile::{Match, Profile};

/// `offsetof(struct seccomp_data, arch)` and `nr`.
const ARCH_OFFSET: u32 = 4;
const NR_OFFSET: u32 = 0;
/// Classic BPF opcodes.
const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JUMP: u16 = 0x05; // BPF_JMP | BPF_JA
const JUMP_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JUMP_GREATER: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JUMP_GREATER_EQUAL: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RETURN: u16 = 0x06; // BPF_RET | BPF_K
/// `SECCOMP_RET_ERRNO | EPERM`.
const REFUSE: u32 = 0x0005_0000 | libc::EPERM as u32;
/// The x32 ABI's bit in a syscall number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 0xC000_00F3;

/// The programs of `profile`, each as the kernel's instructions, to be installed in order.
pub fn compile(profile: &Profile) -> Result<Vec<Vec<[u8; INSTRUCTION_LEN]>>, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|error| SeccompError::Compile(error.to_string()))?;
    let mut programs = vec![base(profile, arch)?];
    for (action, syscalls) in &profile.actions {
        let conditional = syscalls.values().any(|matched| *matched != Match::Always);
        if *action != SeccompAction::Allow && conditional {
            let compiled =
                seccompiler(syscalls.clone(), SeccompAction::Allow, action.clone(), arch)?;
            programs.push(behind_abi_check(compiled));
        }
    }
    programs
        .iter()
        .map(|program| {
            if program.len() > rrocker_init::filters::MAX_INSTRUCTIONS {
                return Err(SeccompError::Compile(format!(
                    "a filter has {} instructions, over the kernel's {}",
                    program.len(),
                    rrocker_init::filters::MAX_INSTRUCTIONS
                )));
            }
            Ok(program.iter().map(to_bytes).collect())
        })
        .collect()
}

/// The strictest of two actions (the kernel's order: the lower value, compared signed).
fn strictest(one: SeccompAction, other: SeccompAction) -> SeccompAction {
    let rank = |action: &SeccompAction| (u32::from(action.clone()) & 0xffff_0000).cast_signed();
    if rank(&other) < rank(&one) { other } else { one }
}

/// The base program (see the module's doc).
fn base(profile: &Profile, arch: TargetArch) -> Result<BpfProgram, SeccompError> {
    // Each named syscall: the strictest of its unconditional actions, if it has one; else
    // all of its conditional rules.
    let mut always: BTreeMap<u32, SeccompAction> = BTreeMap::new();
    let mut conditional: BTreeMap<i64, Match> = BTreeMap::new();
    for (action, syscalls) in &profile.actions {
        for (number, matched) in syscalls {
            match matched {
                Match::Always => {
                    let known = always.remove(&syscall_number(*number)?);
                    let action =
                        known.map_or(action.clone(), |known| strictest(known, action.clone()));
                    always.insert(syscall_number(*number)?, action);
                }
                Match::AnyOf(rules) => {
                    let entry =
                        conditional.entry(*number).or_insert_with(|| Match::AnyOf(Vec::new()));
                    if let Match::AnyOf(all) = entry {
                        all.extend(rules.iter().cloned());
                    }
                }
            }
        }
    }
    conditional
        .retain(|number, _| u32::try_from(*number).is_ok_and(|nr| !always.contains_key(&nr)));
    let default = u32::from(profile.default.clone());
    let mut program = vec![instruction(LOAD_WORD, 0, 0, NR_OFFSET)];
    for (first, last, action) in runs(&always) {
        if first == last {
            program.push(instruction(JUMP_EQUAL, 0, 1, first));
        } else {
            // Below the run: past its two other instructions; above it: past the return.
            program.push(instruction(JUMP_GREATER_EQUAL, 0, 2, first));
            program.push(instruction(JUMP_GREATER, 1, 0, last));
        }
        program.push(instruction(RETURN, 0, 0, u32::from(action)));
    }
    if conditional.is_empty() || profile.default == SeccompAction::Allow {
        // With ALLOW the default, the other actions' programs decide those syscalls.
        program.push(instruction(RETURN, 0, 0, default));
        return Ok(behind_abi_check(program));
    }
    // Each conditional syscall jumps (`ja`: a 32-bit offset) to seccompiler's program.
    let mut jumps = Vec::new();
    for number in conditional.keys() {
        program.push(instruction(JUMP_EQUAL, 0, 1, syscall_number(*number)?));
        jumps.push(program.len());
        program.push(instruction(JUMP, 0, 0, 0));
    }
    program.push(instruction(RETURN, 0, 0, default));
    let checks = program.len();
    for jump in jumps {
        program[jump].k = u32::try_from(checks - jump - 1)
            .map_err(|_| SeccompError::Compile("a jump too far".into()))?;
    }
    program.extend(seccompiler(conditional, profile.default.clone(), SeccompAction::Allow, arch)?);
    Ok(behind_abi_check(program))
}

/// The runs of consecutive syscall numbers that share an action: first, last, action.
fn runs(actions: &BTreeMap<u32, SeccompAction>) -> Vec<(u32, u32, SeccompAction)> {
    let mut runs: Vec<(u32, u32, SeccompAction)> = Vec::new();
    for (number, action) in actions {
        match runs.last_mut() {
            Some((_, last, same)) if *last + 1 == *number && same == action => *last = *number,
            _ => runs.push((*number, *number, action.clone())),
        }
    }
    runs
}

fn syscall_number(number: i64) -> Result<u32, SeccompError> {
    u32::try_from(number).map_err(|_| SeccompError::Compile(format!("syscall number {number}")))
}

/// seccompiler's program: `on_match` for `syscalls` (under their checks), `otherwise` for
/// the rest.
fn seccompiler(
    syscalls: BTreeMap<i64, Match>,
    otherwise: SeccompAction,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = syscalls
        .into_iter()
        .map(|(number, matched)| match matched {
            Match::Always => (number, Vec::new()),
            Match::AnyOf(rules) => (number, rules),
        })
        .collect();
    let compile_error = |error: seccompiler::BackendError| SeccompError::Compile(error.to_string());
    let filter = SeccompFilter::new(rules, otherwise, on_match, arch).map_err(compile_error)?;
    BpfProgram::try_from(filter).map_err(compile_error)
}

/// `program` behind the ABI check: EPERM for a syscall of another architecture and, on
/// x86_64, of the x32 ABI.
fn behind_abi_check(program: BpfProgram) -> BpfProgram {
    let mut checked = vec![
        instruction(LOAD_WORD, 0, 0, ARCH_OFFSET),
        instruction(JUMP_EQUAL, 1, 0, AUDIT_ARCH),
        instruction(RETURN, 0, 0, REFUSE),
    ];
    if cfg!(target_arch = "x86_64") {
        checked.extend([
            instruction(LOAD_WORD, 0, 0, NR_OFFSET),
            instruction(JUMP_GREATER_EQUAL, 0, 1, X32_SYSCALL_BIT),
            instruction(RETURN, 0, 0, REFUSE),
        ]);
    }
    checked.extend(program);
    checked
}

fn instruction(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// An instruction in the kernel's layout (native byte order).
fn to_bytes(instruction: &sock_filter) -> [u8; INSTRUCTION_LEN] {
    let mut bytes = [0u8; INSTRUCTION_LEN];
    bytes[..2].copy_from_slice(&instruction.code.to_ne_bytes());
    bytes[2] = instruction.jt;
    bytes[3] = instruction.jf;
    bytes[4..].copy_from_slice(&instruction.k.to_ne_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolator::seccomp::profile::{self, Machine};

    /// `SECCOMP_RET_ALLOW`.
    const ALLOW: u32 = 0x7fff_0000;

    /// What the kernel sees of a syscall.
    struct Call {
        arch: u32,
        nr: u32,
        args: [u64; 6],
    }

    /// Runs a classic BPF program (the instructions these programs use) on `call`.
    fn run(program: &[[u8; 8]], call: &Call) -> u32 {
        let word = |offset: u32| -> u32 {
            match offset {
                0 => call.nr,
                4 => call.arch,
                16..=63 => {
                    let arg = call.args[usize::try_from((offset - 16) / 8).expect("index")];
                    let half = if offset.is_multiple_of(8) { arg & 0xffff_ffff } else { arg >> 32 };
                    u32::try_from(half).expect("32 bits")
                }
                _ => panic!("load at {offset}"),
            }
        };
        let (mut pc, mut accumulator) = (0usize, 0u32);
        loop {
            let bytes = program[pc];
            let code = u16::from_ne_bytes([bytes[0], bytes[1]]);
            let (jt, jf) = (usize::from(bytes[2]), usize::from(bytes[3]));
            let k = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            pc += 1;
            match code {
                LOAD_WORD => accumulator = word(k),
                0x54 => accumulator &= k, // BPF_ALU | BPF_AND | BPF_K
                JUMP => pc += usize::try_from(k).expect("offset"),
                JUMP_EQUAL => pc += if accumulator == k { jt } else { jf },
                JUMP_GREATER => pc += if accumulator > k { jt } else { jf },
                JUMP_GREATER_EQUAL => pc += if accumulator >= k { jt } else { jf },
                RETURN => return k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    /// The stack's answer: the strictest of its programs' (the lowest action, compared as
    /// the kernel does, signed; among equal actions the first program's).
    fn answer(programs: &[Vec<[u8; 8]>], call: &Call) -> u32 {
        let rank = |value: u32| (value & 0xffff_0000).cast_signed();
        programs
            .iter()
            .map(|program| run(program, call))
            .min_by_key(|value| rank(*value))
            .expect("a program")
    }

    fn native(nr: u32, args: [u64; 6]) -> Call {
        Call { arch: AUDIT_ARCH, nr, args }
    }

    fn default_profile() -> Profile {
        let text = include_str!("default.json");
        profile::parse(text, Machine::this("6.18.0")).expect("the default profile")
    }

    fn number(name: &str) -> u32 {
        u32::try_from(name.parse::<syscalls::Sysno>().expect("a syscall").id()).expect("u32")
    }

    #[test]
    fn the_default_stack_answers_every_syscall_as_its_profile_says() {
        let profile = default_profile();
        let programs = compile(&profile).expect("compiles");
        let eperm = REFUSE;
        let allowed = &profile.actions[0].1;
        for nr in 0..=600u32 {
            let expected = match allowed.get(&i64::from(nr)) {
                Some(Match::Always) => ALLOW,
                Some(Match::AnyOf(_)) => continue,
                None if Some(nr) == Some(number("clone3")) => 0x0005_0000 | 38,
                None => eperm,
            };
            assert_eq!(answer(&programs, &native(nr, [0; 6])), expected, "syscall {nr}");
        }
        // The conditional ones, both ways.
        let clone = number("clone");
        assert_eq!(answer(&programs, &native(clone, [0x0001_1200, 0, 0, 0, 0, 0])), ALLOW);
        let new_user = u64::try_from(libc::CLONE_NEWUSER).expect("flag");
        assert_eq!(answer(&programs, &native(clone, [new_user, 0, 0, 0, 0, 0])), eperm);
        let socket = number("socket");
        assert_eq!(answer(&programs, &native(socket, [2, 1, 0, 0, 0, 0])), ALLOW);
        for family in [38, 40] {
            assert_eq!(answer(&programs, &native(socket, [family, 1, 0, 0, 0, 0])), eperm);
        }
        let personality = number("personality");
        assert_eq!(answer(&programs, &native(personality, [0xffff_ffff, 0, 0, 0, 0, 0])), ALLOW);
        assert_eq!(answer(&programs, &native(personality, [0x0040_0000, 0, 0, 0, 0, 0])), eperm);
        // Another ABI, whatever the syscall.
        let i386 = Call { arch: 0x4000_0003, nr: 20, args: [0; 6] };
        assert_eq!(answer(&programs, &i386), eperm);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(answer(&programs, &native(X32_SYSCALL_BIT | 39, [0; 6])), eperm);
        }
    }

    #[test]
    fn the_default_stack_is_one_small_program() {
        let programs = compile(&default_profile()).expect("compiles");
        assert_eq!(programs.len(), 1);
        assert!(programs[0].len() < 250, "{} instructions", programs[0].len());
    }

    #[test]
    fn a_deny_list_refuses_only_its_syscalls_and_allow_alone_still_checks_the_abi() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
        let programs = compile(&profile::parse(text, Machine::this("6.18.0")).expect("parses"))
            .expect("compiles");
        assert_eq!(programs.len(), 1);
        assert_eq!(answer(&programs, &native(number("mkdirat"), [0; 6])), REFUSE);
        assert_eq!(answer(&programs, &native(number("getpid"), [0; 6])), ALLOW);
        let allow_all = r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#;
        let programs =
            compile(&profile::parse(allow_all, Machine::this("6.18.0")).expect("parses"))
                .expect("compiles");
        assert_eq!(answer(&programs, &native(number("getpid"), [0; 6])), ALLOW);
        let i386 = Call { arch: 0x4000_0003, nr: 20, args: [0; 6] };
        assert_eq!(answer(&programs, &i386), REFUSE);
    }

    #[test]
    fn a_syscall_named_only_by_a_conditional_rule_of_another_action_gets_the_default_otherwise() {
        let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdirat"], "action": "SCMP_ACT_LOG", "args": [{"index": 2, "value": 448, "op": "SCMP_CMP_EQ"}]}]}"#;
        let programs = compile(&profile::parse(text, Machine::this("6.18.0")).expect("parses"))
            .expect("compiles");
        let mkdirat = number("mkdirat");
        assert_eq!(answer(&programs, &native(mkdirat, [0, 0, 448, 0, 0, 0])), 0x7ffc_0000, "LOG");
        assert_eq!(answer(&programs, &native(mkdirat, [0, 0, 493, 0, 0, 0])), REFUSE);
        assert_eq!(answer(&programs, &native(number("getpid"), [0; 6])), ALLOW);
    }
}
