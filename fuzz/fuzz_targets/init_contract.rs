//! The contract with init: any argv init accepts survives a round trip through the daemon's
//! encoding, report records decode to what was encoded (or are refused), and so do seccomp
//! filter records, never a panic.

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use rrocker_init::plan::InitPlan;
use rrocker_init::report;

fuzz_target!(|input: (Vec<Vec<u8>>, Vec<u8>, Vec<u8>)| {
    let (args, record, filters) = input;
    if let Some(decoded) = rrocker_init::filters::decode(&filters) {
        let programs: Vec<Vec<[u8; 8]>> = decoded
            .iter()
            .map(|program| program.chunks(8).map(|chunk| chunk.try_into().expect("8 bytes")).collect())
            .collect();
        assert_eq!(rrocker_init::filters::encode(&programs), filters);
    }
    if let Some(plan) = InitPlan::from_argv(args.into_iter().map(OsString::from_vec)) {
        let again = InitPlan::from_argv(plan.to_argv().into_iter().map(OsString::from_vec));
        assert_eq!(again, Some(plan));
    }
    if let Some(report::Record::Failed { step, errno }) = report::decode(&record) {
        assert_eq!(
            report::decode(&report::encode(step, errno)),
            Some(report::Record::Failed { step, errno })
        );
    }
});
