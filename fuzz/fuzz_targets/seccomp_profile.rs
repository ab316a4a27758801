//! Seccomp profiles: any text is either refused with an error or resolved and compiled to
//! BPF programs that init's decoder takes back whole, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rrockerd::isolator::seccomp::{bpf, profile};

fuzz_target!(|text: &str| {
    let machine = profile::Machine::this("6.18.0");
    if let Ok(profile) = profile::parse(text, machine) {
        if let Ok(programs) = bpf::compile(&profile) {
            let bytes = rrocker_init::filters::encode(&programs);
            let decoded = rrocker_init::filters::decode(&bytes).expect("decodes");
            assert_eq!(decoded.len(), programs.len());
        }
    }
});
