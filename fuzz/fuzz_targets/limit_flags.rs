//! The CLI's limit flags (`--max-cpu`, `--max-mem`, `--max-pids`): any text is refused or
//! parsed into a value the daemon's own validation could take, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rrocker_cli::limits::{parse_count, parse_cpu, parse_size};

fuzz_target!(|text: &str| {
    if let Ok(quota) = parse_cpu(text) {
        assert!((1_000..=1_000_000_000_000).contains(&quota), "{text:?} -> {quota}");
    }
    if let Ok(bytes) = parse_size(text) {
        assert!(bytes >= 1, "{text:?} -> {bytes}");
    }
    if let Ok(count) = parse_count(text) {
        assert!(count >= 1, "{text:?} -> {count}");
    }
});
