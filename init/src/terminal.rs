//! A task's terminal, when it has one: its window size, as init's argv gives the first one
//! and as the daemon sends later ones (queued signals, which the control module decodes).

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Lines.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl WindowSize {
    /// The size as a signal's value.
    pub fn to_value(self) -> i32 {
        (i32::from(self.rows) << 16) | i32::from(self.cols)
    }

    /// The size a signal's value carries.
    pub fn from_value(value: i32) -> Self {
        let [rows_high, rows_low, cols_high, cols_low] = value.to_be_bytes();
        Self {
            rows: u16::from_be_bytes([rows_high, rows_low]),
            cols: u16::from_be_bytes([cols_high, cols_low]),
        }
    }

    /// The size as init's argument: `ROWSxCOLS`.
    pub fn to_arg(self) -> Vec<u8> {
        format!("{}x{}", self.rows, self.cols).into_bytes()
    }

    /// Parses [`Self::to_arg`]'s form.
    pub fn from_arg(arg: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(arg).ok()?;
        let (rows, cols) = text.split_once('x')?;
        Some(Self { rows: rows.parse().ok()?, cols: cols.parse().ok()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_through_a_value_and_an_argument() {
        for size in [WindowSize { rows: 24, cols: 80 }, WindowSize { rows: 65535, cols: 65535 }] {
            assert_eq!(WindowSize::from_value(size.to_value()), size);
            assert_eq!(WindowSize::from_arg(&size.to_arg()), Some(size));
        }
        assert_eq!(WindowSize::from_arg(b"24"), None);
        assert_eq!(WindowSize::from_arg(b"24x-1"), None);
    }
}
