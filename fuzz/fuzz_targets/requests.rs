//! What the daemon does with request bytes before acting: protobuf decoding of Start and Stop
//! requests, then the validation of argv, env, workdir, limits, task ids and grace periods.
//! Any input is refused or accepted, never a panic; an echoed id stays short.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rrocker_proto::v1::{StartRequest, StopRequest};
use rrockerd::validate;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = StartRequest::decode(data) {
        let _ = validate::start_request(&request);
        if let Some(limits) = &request.limits {
            let _ = validate::limits(limits, 2);
        }
    }
    if let Ok(request) = StopRequest::decode(data) {
        let _ = validate::task_id(&request.task_id);
        assert!(validate::echo(&request.task_id).chars().count() <= 67);
        let _ = validate::grace(request.grace_ms, Duration::from_secs(10));
    }
});
