//! What the daemon does with request bytes before acting: protobuf decoding of Start and Stop
//! requests, the conversion of a start into a task spec (argv, env, workdir and limits
//! checked), its limits against a host, task ids and grace periods. Any input is refused or
//! accepted, never a panic; an echoed id stays short, and accepted limits go back out as
//! they came in (but for the CPU period a quota without one gets).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rrocker_proto::v1::{StartRequest, StopRequest};
use rrockerd::spec::TaskSpec;
use rrockerd::validate;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = StartRequest::decode(data) {
        let wire = request.limits.clone().unwrap_or_default();
        if let Ok(spec) = TaskSpec::try_from(request) {
            let _ = validate::limits(&spec.limits, 2);
            let back = rrocker_proto::v1::Limits::from(&spec.limits);
            assert_eq!(back.memory_max_bytes, wire.memory_max_bytes);
            assert_eq!((back.pids_max, back.cpu_quota_us), (wire.pids_max, wire.cpu_quota_us));
            assert_eq!(back.io, wire.io);
        }
    }
    if let Ok(request) = StopRequest::decode(data) {
        let _ = validate::task_id(&request.task_id);
        assert!(validate::echo(&request.task_id).chars().count() <= 67);
        let _ = validate::grace(request.grace_ms, Duration::from_secs(10));
    }
});
