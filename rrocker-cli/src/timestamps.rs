//! Times of output and events on the command line: reading a point in time as flags give it
//! (`--since 10m`, `--until 2026-12-02T10:00:00Z`), and prefixing each line of a task's
//! output with the time rrockerd read it (`logs -t`, as `docker logs -t`). Pure, no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Reads a point in time: Unix seconds (`1796205600`, `1796205600.25`), a duration, meaning
/// that long ago (`30s`, `10m`, `1h30m`), or an RFC 3339 time in UTC
/// (`2026-12-02T10:00:00Z`, fractions of a second allowed: what `logs -t` prints).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    parse_time_at(text, SystemTime::now())
}

fn parse_time_at(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    // A bare number is Unix seconds (never a duration, which takes a unit).
    if let Ok(seconds) = text.parse::<f64>()
        && let Ok(since) = Duration::try_from_secs_f64(seconds)
    {
        return Ok(UNIX_EPOCH + since);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let at = now.checked_sub(ago).filter(|at| *at >= UNIX_EPOCH);
        return at.ok_or_else(|| format!("invalid time: '{text}' ago is before 1970"));
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    Err(format!(
        "invalid time '{text}': expected a duration (10m: that long ago), an RFC 3339 time in UTC (2026-12-02T10:00:00Z) or Unix seconds"
    ))
}

/// `at` in nanoseconds since the Unix epoch (0 before it, saturating far after it).
pub fn unix_ns(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// `at_ns` (nanoseconds since the Unix epoch) as docker prints it: RFC 3339 in UTC with nine
/// digits of fraction, so that the prefixes line up and sort as text.
pub fn rfc3339_ns(at_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(at_ns)).to_string()
}

/// Puts the time each line was read before it, for each descriptor apart (a line may come in
/// several pieces, and stdout's and stderr's interleave).
#[derive(Debug, Default)]
pub struct LineStamps {
    /// Whether stdout's, then stderr's, last piece ended inside a line.
    inside_line: [bool; 2],
}

impl LineStamps {
    /// `data`, a piece of one descriptor's output read at `at_ns`, with `TIME ` before each
    /// line that starts in it.
    pub fn stamp(&mut self, stderr: bool, at_ns: u64, data: &[u8]) -> Vec<u8> {
        let prefix = format!("{} ", rfc3339_ns(at_ns));
        let inside = &mut self.inside_line[usize::from(stderr)];
        let mut out = Vec::with_capacity(data.len() + prefix.len());
        for line in data.split_inclusive(|byte| *byte == b'\n') {
            if !*inside {
                out.extend_from_slice(prefix.as_bytes());
            }
            out.extend_from_slice(line);
            *inside = line.last() != Some(&b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_a_duration_ago_an_rfc_3339_time_or_unix_seconds() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_205_600);
        let at = |text| parse_time_at(text, now).map(unix_ns);
        assert_eq!(at("10m"), Ok(1_796_205_000_000_000_000));
        assert_eq!(at("1h30m"), Ok(1_796_200_200_000_000_000));
        assert_eq!(at("2026-12-02T10:00:00Z"), Ok(1_796_205_600_000_000_000));
        assert_eq!(at("2026-12-02T10:00:00.000000007Z"), Ok(1_796_205_600_000_000_007));
        assert_eq!(at("1796205600.25"), Ok(1_796_205_600_250_000_000));
        assert_eq!(at("0"), Ok(0));
        for bad in ["yesterday", "-5", "2026-13-02T10:00:00Z", "", "1e400"] {
            let error = at(bad).expect_err(bad);
            assert!(error.starts_with("invalid time"), "{bad}: {error}");
        }
        assert!(at("100000d").expect_err("before 1970").contains("before 1970"));
    }

    #[test]
    fn every_line_gets_its_time_once_whatever_the_pieces() {
        let mut stamps = LineStamps::default();
        let t1 = 1_796_205_600_000_000_001;
        let first = "2026-12-02T10:00:00.000000001Z ";
        let second = "2026-12-02T10:00:01.000000000Z ";
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("text");
        assert_eq!(text(stamps.stamp(false, t1, b"a\nbc")), format!("{first}a\n{first}bc"));
        // Stderr's line between does not end stdout's.
        assert_eq!(text(stamps.stamp(true, t1, b"err\n")), format!("{first}err\n"));
        let t2 = t1 + 999_999_999;
        assert_eq!(text(stamps.stamp(false, t2, b"d\ne\n")), format!("d\n{second}e\n"));
        assert_eq!(text(stamps.stamp(false, t2, b"")), "");
        assert_eq!(text(stamps.stamp(false, t2, b"\n")), format!("{second}\n"));
    }
}
