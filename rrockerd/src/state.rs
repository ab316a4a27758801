//! A task's lifecycle as a value: `Running → Completed | Killed | Failed`, and the one
//! function that decides the final state from how the process ended and whether rrocker
//! asked it to stop. Pure: no I/O.

use rrocker_uring::ExitStatus;

/// Why a task was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// A signal rrocker did not send (the task killed itself, or something else did).
    Signal,
    /// A user stopped it.
    Stopped,
    /// The daemon shut down.
    Shutdown,
    /// The kernel's OOM killer ended it (its memory limit was reached).
    OutOfMemory,
    /// A user sent it the signal that ended it.
    Signalled,
    /// Its deadline passed.
    TimedOut,
}

/// The signals users sent a task (Signal requests), one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentSignals(pub u64);

impl SentSignals {
    /// With `signal` (1 to 64) added.
    pub fn with(self, signal: i32) -> Self {
        Self(self.0 | Self::bit(signal))
    }

    /// Whether a user sent `signal`.
    pub fn contains(self, signal: i32) -> bool {
        self.0 & Self::bit(signal) != 0
    }

    fn bit(signal: i32) -> u64 {
        u32::try_from(signal - 1).ok().and_then(|shift| 1u64.checked_shl(shift)).unwrap_or(0)
    }
}

/// Who asked a task to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A Stop request.
    User,
    /// The daemon's shutdown.
    Shutdown,
    /// Its deadline.
    Deadline,
}

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// The command runs.
    Running,
    /// The command exited by itself.
    Completed {
        /// Its exit code.
        exit_code: i32,
    },
    /// The command was ended by a signal or a stop.
    Killed {
        /// Why.
        reason: KillReason,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// Its exit code, if it exited by itself after being asked to stop.
        exit_code: Option<i32>,
    },
    /// The task was lost (the engine stopped under it).
    Failed {
        /// Why.
        error: String,
    },
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Running)
    }

    /// The final state of a task whose process ended with `exit`, given whether (and by whom)
    /// it was asked to stop, which signals users sent it and whether the kernel's OOM killer
    /// killed a process of its cgroup. A task that was asked to stop is Killed even if it
    /// exited cleanly on SIGTERM; its exit code is kept. An unstopped command that died of a
    /// signal a user sent was signalled; else, of SIGKILL in a cgroup with OOM kills, it was
    /// killed for memory.
    pub fn ended(
        exit: ExitStatus,
        stop: Option<StopCause>,
        sent: SentSignals,
        oom_killed: bool,
    ) -> Self {
        if let (None, ExitStatus::Signaled(signal)) = (stop, exit)
            && sent.contains(signal)
        {
            return Self::Killed {
                reason: KillReason::Signalled,
                signal: Some(signal),
                exit_code: None,
            };
        }
        if oom_killed && stop.is_none() && exit == ExitStatus::Signaled(libc::SIGKILL) {
            let reason = KillReason::OutOfMemory;
            return Self::Killed { reason, signal: Some(libc::SIGKILL), exit_code: None };
        }
        let reason = stop.map(|cause| match cause {
            StopCause::User => KillReason::Stopped,
            StopCause::Shutdown => KillReason::Shutdown,
            StopCause::Deadline => KillReason::TimedOut,
        });
        match (exit, reason) {
            (ExitStatus::Exited(exit_code), None) => Self::Completed { exit_code },
            (ExitStatus::Exited(exit_code), Some(reason)) => {
                Self::Killed { reason, signal: None, exit_code: Some(exit_code) }
            }
            (ExitStatus::Signaled(signal), reason) => Self::Killed {
                reason: reason.unwrap_or(KillReason::Signal),
                signal: Some(signal),
                exit_code: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unasked_exit_completes_and_an_unasked_signal_kills() {
        assert_eq!(
            TaskState::ended(ExitStatus::Exited(3), None, SentSignals::default(), false),
            TaskState::Completed { exit_code: 3 }
        );
        assert_eq!(
            TaskState::ended(ExitStatus::Signaled(9), None, SentSignals::default(), false),
            TaskState::Killed { reason: KillReason::Signal, signal: Some(9), exit_code: None }
        );
    }

    #[test]
    fn a_signal_a_user_sent_that_ended_it_is_signalled_unless_stopped() {
        let sent = SentSignals::default().with(libc::SIGUSR1).with(libc::SIGKILL).with(64);
        assert!(sent.contains(64) && !sent.contains(libc::SIGTERM) && !sent.contains(0));
        let signalled = |signal| TaskState::Killed {
            reason: KillReason::Signalled,
            signal: Some(signal),
            exit_code: None,
        };
        let ended = |exit, stop, oom| TaskState::ended(exit, stop, sent, oom);
        assert_eq!(ended(ExitStatus::Signaled(libc::SIGUSR1), None, false), signalled(10));
        // Sent, and also OOM kills in its cgroup: the user's SIGKILL ended it.
        assert_eq!(ended(ExitStatus::Signaled(libc::SIGKILL), None, true), signalled(9));
        // It handled the signal and exited by itself.
        assert_eq!(
            ended(ExitStatus::Exited(0), None, false),
            TaskState::Completed { exit_code: 0 }
        );
        // A signal nobody sent.
        assert_eq!(
            ended(ExitStatus::Signaled(libc::SIGTERM), None, false),
            TaskState::Killed { reason: KillReason::Signal, signal: Some(15), exit_code: None }
        );
        assert_eq!(
            ended(ExitStatus::Signaled(libc::SIGKILL), Some(StopCause::User), false),
            TaskState::Killed { reason: KillReason::Stopped, signal: Some(9), exit_code: None }
        );
    }

    #[test]
    fn a_stopped_task_is_killed_whatever_way_it_ended() {
        assert_eq!(
            TaskState::ended(
                ExitStatus::Exited(0),
                Some(StopCause::User),
                SentSignals::default(),
                false
            ),
            TaskState::Killed { reason: KillReason::Stopped, signal: None, exit_code: Some(0) }
        );
        assert_eq!(
            TaskState::ended(
                ExitStatus::Signaled(15),
                Some(StopCause::Shutdown),
                SentSignals::default(),
                false
            ),
            TaskState::Killed { reason: KillReason::Shutdown, signal: Some(15), exit_code: None }
        );
    }

    #[test]
    fn a_sigkill_with_oom_kills_is_out_of_memory_unless_stopped() {
        let oom = TaskState::Killed {
            reason: KillReason::OutOfMemory,
            signal: Some(libc::SIGKILL),
            exit_code: None,
        };
        assert_eq!(
            TaskState::ended(
                ExitStatus::Signaled(libc::SIGKILL),
                None,
                SentSignals::default(),
                true
            ),
            oom
        );
        // A child was OOM-killed, but the command itself exited: its exit code counts.
        assert_eq!(
            TaskState::ended(ExitStatus::Exited(1), None, SentSignals::default(), true),
            TaskState::Completed { exit_code: 1 }
        );
        assert_eq!(
            TaskState::ended(
                ExitStatus::Signaled(libc::SIGKILL),
                Some(StopCause::User),
                SentSignals::default(),
                true
            ),
            TaskState::Killed {
                reason: KillReason::Stopped,
                signal: Some(libc::SIGKILL),
                exit_code: None
            }
        );
    }

    #[test]
    fn only_running_is_not_final() {
        assert!(!TaskState::Running.is_final());
        assert!(TaskState::Completed { exit_code: 0 }.is_final());
        assert!(TaskState::Failed { error: String::new() }.is_final());
    }
}
