//! The report protocol between a spawned child and the engine, over a pipe: records of five
//! bytes, a tag then a little-endian i32. The engine's own child writes a failed step before
//! its exec; an isolated program (an init) writes READY once its command runs, and the
//! command's end (EXITED or SIGNALED) before it exits itself, so that a command killed by a
//! signal is reported as such even though init exits normally. Records are smaller than
//! PIPE_BUF, so each arrives whole.

/// Length of a record.
pub const RECORD_LEN: usize = 5;
/// Tags 1..=127 name a failed set-up step; the value is the errno. Engine steps are below
/// [`FIRST_INIT_STEP`]; an init's own steps start there.
pub const FIRST_INIT_STEP: u8 = 16;
/// The command runs (value 0).
pub const READY: u8 = 0x80;
/// The command exited; the value is its exit code.
pub const EXITED: u8 = 0x81;
/// A signal killed the command; the value is the signal number.
pub const SIGNALED: u8 = 0x82;

/// One record, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The writer closed the pipe without a (further) record.
    End,
    /// A set-up step failed with an errno.
    Failed {
        /// The step.
        step: u8,
        /// The errno.
        errno: i32,
    },
    /// The command runs.
    Ready,
    /// The command exited with a code.
    Exited(i32),
    /// A signal killed the command.
    Signaled(i32),
}

/// Encodes a record.
pub fn encode(tag: u8, value: i32) -> [u8; RECORD_LEN] {
    let mut record = [0u8; RECORD_LEN];
    record[0] = tag;
    record[1..].copy_from_slice(&value.to_le_bytes());
    record
}

/// Decodes what one read returned (empty: end of pipe); `None` for a malformed record.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    if bytes.is_empty() {
        return Some(Record::End);
    }
    let [tag, a, b, c, d] = <[u8; RECORD_LEN]>::try_from(bytes).ok()?;
    let value = i32::from_le_bytes([a, b, c, d]);
    Some(match tag {
        READY => Record::Ready,
        EXITED => Record::Exited(value),
        SIGNALED => Record::Signaled(value),
        1..=127 => Record::Failed { step: tag, errno: value },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        assert_eq!(decode(&encode(READY, 0)), Some(Record::Ready));
        assert_eq!(decode(&encode(EXITED, 3)), Some(Record::Exited(3)));
        assert_eq!(decode(&encode(SIGNALED, 9)), Some(Record::Signaled(9)));
        assert_eq!(decode(&encode(17, 1)), Some(Record::Failed { step: 17, errno: 1 }));
        assert_eq!(decode(&[]), Some(Record::End));
        assert_eq!(decode(&[1, 2]), None);
        assert_eq!(decode(&encode(0, 0)), None);
    }
}
