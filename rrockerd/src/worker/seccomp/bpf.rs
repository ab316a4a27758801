//! A resolved [`Profile`] as BPF programs, compiled with seccompiler. seccompiler gives each
//! program one action for the syscalls it matches, so a profile becomes a stack: a base
//! program (the default action for syscalls no rule names, ALLOW for those that some rule
//! names, under the rule's argument checks) and one program per other action (that action
//! for its syscalls, ALLOW for the rest). The kernel runs every program of the stack and
//! takes the strictest answer, which is the profile's.
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
const JUMP_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
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
    let mut programs = Vec::new();
    if profile.default != SeccompAction::Allow {
        let mut named: BTreeMap<i64, Match> = BTreeMap::new();
        for (_, syscalls) in &profile.actions {
            for (number, matched) in syscalls {
                merge(named.entry(*number).or_insert_with(|| Match::AnyOf(Vec::new())), matched);
            }
        }
        programs.push(program(named, profile.default.clone(), SeccompAction::Allow, arch)?);
    }
    for (action, syscalls) in &profile.actions {
        if *action != SeccompAction::Allow {
            programs.push(program(syscalls.clone(), SeccompAction::Allow, action.clone(), arch)?);
        }
    }
    if programs.is_empty() {
        // Nothing but ALLOW: still refuse the other ABIs.
        let mut only_abi = abi_check();
        only_abi.push(instruction(RETURN, 0, 0, 0x7fff_0000));
        programs.push(only_abi);
    }
    programs.iter().map(|program| Ok(program.iter().map(to_bytes).collect())).collect()
}

/// Adds `matched`'s cases to `into`.
fn merge(into: &mut Match, matched: &Match) {
    match (into, matched) {
        (Match::Always, _) => {}
        (into, Match::Always) => *into = Match::Always,
        (Match::AnyOf(rules), Match::AnyOf(more)) => rules.extend(more.iter().cloned()),
    }
}

/// One program: `on_match` for `syscalls` (under their checks), `otherwise` for the rest,
/// behind the ABI check.
fn program(
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
    let compiled = BpfProgram::try_from(filter).map_err(compile_error)?;
    let mut program = abi_check();
    program.extend(compiled);
    if program.len() > rrocker_init::filters::MAX_INSTRUCTIONS {
        return Err(SeccompError::Compile(format!(
            "the filter has {} instructions, over the kernel's {}",
            program.len(),
            rrocker_init::filters::MAX_INSTRUCTIONS
        )));
    }
    Ok(program)
}

/// Refuses (EPERM) a syscall of another architecture and, on x86_64, of the x32 ABI.
fn abi_check() -> BpfProgram {
    let mut check = vec![
        instruction(LOAD_WORD, 0, 0, ARCH_OFFSET),
        instruction(JUMP_EQUAL, 1, 0, AUDIT_ARCH),
        instruction(RETURN, 0, 0, REFUSE),
    ];
    if cfg!(target_arch = "x86_64") {
        check.extend([
            instruction(LOAD_WORD, 0, 0, NR_OFFSET),
            instruction(JUMP_GREATER_EQUAL, 0, 1, X32_SYSCALL_BIT),
            instruction(RETURN, 0, 0, REFUSE),
        ]);
    }
    check
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

    fn profile(default: SeccompAction, actions: Vec<(SeccompAction, Vec<i64>)>) -> Profile {
        let actions = actions
            .into_iter()
            .map(|(action, numbers)| {
                (action, numbers.into_iter().map(|number| (number, Match::Always)).collect())
            })
            .collect();
        Profile { default, actions }
    }

    fn first_instructions(program: &[[u8; 8]]) -> Vec<[u8; 8]> {
        program[..abi_check().len()].to_vec()
    }

    #[test]
    fn an_allow_list_with_one_other_action_is_a_stack_of_two_each_behind_the_abi_check() {
        let allow_list = profile(
            SeccompAction::Errno(1),
            vec![(SeccompAction::Allow, vec![0, 1]), (SeccompAction::Errno(38), vec![435])],
        );
        let programs = compile(&allow_list).expect("compiles");
        assert_eq!(programs.len(), 2);
        let check: Vec<[u8; 8]> = abi_check().iter().map(to_bytes).collect();
        for program in &programs {
            assert_eq!(first_instructions(program), check);
        }
    }

    #[test]
    fn a_deny_list_has_no_base_program_and_allow_alone_still_checks_the_abi() {
        let deny_list =
            profile(SeccompAction::Allow, vec![(SeccompAction::Errno(1), vec![83, 258])]);
        assert_eq!(compile(&deny_list).expect("compiles").len(), 1);
        let programs = compile(&profile(SeccompAction::Allow, vec![])).expect("compiles");
        assert_eq!(programs.len(), 1);
        assert_eq!(programs[0].len(), abi_check().len() + 1);
    }

    #[test]
    fn the_abi_check_refuses_other_architectures_with_eperm() {
        let check = abi_check();
        assert_eq!(check[1].k, AUDIT_ARCH);
        assert_eq!((check[2].code, check[2].k), (RETURN, REFUSE));
        assert_eq!(REFUSE & 0xffff, 1);
    }
}
