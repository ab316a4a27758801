//! The local terminal while the CLI drives a task's terminal (`run -it`, `attach` and `exec
//! -it` of a task with one): raw, so that every key reaches the task as typed (Ctrl-C as a
//! character for the task's terminal to turn into its SIGINT), and restored when the guard
//! is dropped: on every return, error or unwinding panic, and before the CLI writes a note
//! of its own. Its size is what the task's terminal starts with and follows.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rrocker_proto::v1::TerminalSize;
use rustix::termios::{self, OptionalActions, Termios};

/// The local terminal in raw mode, until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts the CLI's stdin in raw mode; `None` when it is not a terminal.
    pub fn enter() -> std::io::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Drain: what the task wrote is shown before the terminal is cooked again.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Drain, &self.saved);
    }
}

/// The size of the CLI's terminal (stdout's, else stdin's), if it has one.
pub fn size() -> Option<TerminalSize> {
    let from = |fd: std::os::fd::BorrowedFd<'_>| termios::tcgetwinsize(fd).ok();
    let size = from(std::io::stdout().as_fd()).or_else(|| from(std::io::stdin().as_fd()))?;
    (size.ws_row > 0 && size.ws_col > 0)
        .then(|| TerminalSize { rows: size.ws_row.into(), cols: size.ws_col.into() })
}

/// The local terminal's new sizes (at each SIGWINCH), for a task's terminal to follow; none
/// ever for a task without one.
#[derive(Debug)]
pub struct Resizes(Option<tokio::signal::unix::Signal>);

impl Resizes {
    /// Watches the local terminal's size if `follow`.
    pub fn watch(follow: bool) -> std::io::Result<Self> {
        let signals = follow
            .then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()))
            .transpose()?;
        Ok(Self(signals))
    }

    /// The next new size.
    pub async fn next(&mut self) -> TerminalSize {
        let Some(signals) = &mut self.0 else { return std::future::pending().await };
        while signals.recv().await.is_some() {
            if let Some(size) = size() {
                return size;
            }
        }
        std::future::pending().await
    }
}
