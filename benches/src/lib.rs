//! Shared pieces of rrocker's benchmarks: timing summaries and result files. Every benchmark
//! measures a baseline in the same run and reports rrocker as a ratio against it, because the
//! machines these run on are shared and noisy.

use std::path::PathBuf;
use std::time::Duration;

/// Whether the quick mode (`RROCKER_BENCH_QUICK=1`) is on: few iterations, for CI.
pub fn quick() -> bool {
    std::env::var_os("RROCKER_BENCH_QUICK").is_some_and(|value| value != "0")
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Fastest.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let at = |quantile: f64| {
            // The index is within 0..len by construction.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((samples.len() - 1) as f64 * quantile).round() as usize;
            samples[index]
        };
        Self { min: samples[0], p50: at(0.5), p90: at(0.9), p99: at(0.99) }
    }

    /// The summary as JSON, in microseconds.
    pub fn to_json(self) -> serde_json::Value {
        let us = |duration: Duration| duration.as_secs_f64() * 1e6;
        serde_json::json!({
            "min_us": us(self.min), "p50_us": us(self.p50), "p90_us": us(self.p90), "p99_us": us(self.p99)
        })
    }
}

/// Writes a benchmark's JSON result to `<target>/rrocker-bench/<name>.json` and returns the
/// path.
pub fn write_result(name: &str, result: &serde_json::Value) -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target =
        exe.ancestors().nth(3).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("rrocker-bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(result)?)?;
    Ok(path)
}
