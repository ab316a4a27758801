//! What the daemon tells a running init, as queued real-time signals (`SI_QUEUE`, the
//! message in the signal's value): no further channel into the task is needed, and queued
//! signals are neither merged nor lost, so the last resize sent is the one set. A user's
//! Signal of the same number comes as plain `kill` (`SI_USER`) and is passed on as any
//! other. A process inside the task could queue one too, which would only do what it can
//! do itself: resize its own terminal, or signal its own command.

use crate::terminal::WindowSize;

/// SIGRTMAX: the command's terminal has a new size (the value, see [`WindowSize::to_value`]).
pub const RESIZE_SIGNAL: i32 = 64;
/// SIGRTMAX-1: send the command the signal numbered by the value (SIGKILL too, which init
/// itself cannot be passed).
pub const FORWARD_SIGNAL: i32 = 63;
/// `SI_QUEUE`: the code of a signal sent with sigqueue or pidfd_send_signal and a siginfo.
pub const SI_QUEUE: i32 = -1;

/// A message from the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Set the command's terminal to this size.
    Resize(WindowSize),
    /// Send the command this signal.
    Forward(i32),
}

impl Control {
    /// The signal and value it is queued as.
    pub fn encode(self) -> (i32, i32) {
        match self {
            Self::Resize(size) => (RESIZE_SIGNAL, size.to_value()),
            Self::Forward(signal) => (FORWARD_SIGNAL, signal),
        }
    }

    /// The message a received signal carries, if it is one (queued, of a control signal).
    pub fn decode(signal: i32, code: i32, value: i32) -> Option<Self> {
        match (signal, code) {
            (RESIZE_SIGNAL, SI_QUEUE) => Some(Self::Resize(WindowSize::from_value(value))),
            (FORWARD_SIGNAL, SI_QUEUE) => Some(Self::Forward(value)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_only_queued_signals_carry_one() {
        for message in [Control::Resize(WindowSize { rows: 40, cols: 120 }), Control::Forward(9)] {
            let (signal, value) = message.encode();
            assert_eq!(Control::decode(signal, SI_QUEUE, value), Some(message));
            assert_eq!(Control::decode(signal, 0, value), None, "a user's kill is passed on");
        }
        assert_eq!(Control::decode(28, SI_QUEUE, 0), None);
    }
}
