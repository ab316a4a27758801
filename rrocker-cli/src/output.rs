//! Writing a task's output stream where the CLI's own output goes: the task's stdout bytes to
//! fd 1 and its stderr bytes to fd 2, unchanged (or each line after its time, with `-t`) and
//! unbuffered, until the stream's final status. Shared by `stream`, `logs` and `run`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};

use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::{Fd, StreamRequest, StreamResponse, TaskStatus};
use tonic::transport::Channel;

use crate::CliError;
use crate::raw_terminal::RawMode;
use crate::stream_body::OutputStream;
use crate::timestamps::LineStamps;

/// Where a stream's output goes.
#[derive(Debug)]
pub struct Terminal {
    stdout: File,
    stderr: File,
    /// The local terminal in raw mode while a task's terminal is driven; cooked again before
    /// any note.
    raw: Option<RawMode>,
    /// Each line after the time it was read, if asked.
    stamps: Option<LineStamps>,
}

impl Terminal {
    /// Writes straight to fds 1 and 2, one write per piece (std's stdout would copy each
    /// piece into its line buffer and scan it for newlines first).
    pub fn new() -> Result<Self, CliError> {
        let unbuffered = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().map(File::from);
        Ok(Self {
            stdout: unbuffered(std::io::stdout().as_fd())?,
            stderr: unbuffered(std::io::stderr().as_fd())?,
            raw: None,
            stamps: None,
        })
    }

    /// Writes each line of output after the time rrockerd read it (`logs -t`).
    pub fn stamp_lines(&mut self) {
        self.stamps = Some(LineStamps::default());
    }

    /// Keeps the local terminal in raw mode (`raw`) until the first note, or the end.
    pub fn hold_raw(&mut self, raw: Option<RawMode>) {
        self.raw = raw;
    }

    /// Writes one message of a stream; returns the status that ends it, once it comes.
    pub fn write(&mut self, message: StreamResponse) -> Result<Option<TaskStatus>, CliError> {
        match message.event {
            Some(Event::Output(output)) => {
                let stderr = output.fd() == Fd::Stderr;
                let file = if stderr { &mut self.stderr } else { &mut self.stdout };
                match &mut self.stamps {
                    Some(stamps) => {
                        file.write_all(&stamps.stamp(stderr, output.at_ns, &output.data))?
                    }
                    None => file.write_all(&output.data)?,
                }
            }
            Some(Event::Status(status)) => return Ok(Some(status)),
            // An exec's end, told as a task's would be.
            Some(Event::ExecEnded(exec)) => {
                let status = TaskStatus {
                    state: exec.state,
                    exit_code: exec.exit_code,
                    signal: exec.signal,
                    argv: exec.argv,
                    ..TaskStatus::default()
                };
                return Ok(Some(status));
            }
            Some(Event::Started(_)) | None => {}
        }
        Ok(None)
    }

    /// Says on stderr how a task that did not complete by itself ended (one that did says
    /// so with its exit code alone).
    pub fn note_end(&mut self, status: &TaskStatus) -> Result<(), CliError> {
        if status.state() == rrocker_proto::v1::TaskState::Completed {
            return Ok(());
        }
        self.note(&crate::format::state_lines(status))
    }

    /// Writes text on stderr (the final state lines, notices).
    pub fn note(&mut self, text: &str) -> Result<(), CliError> {
        self.raw = None;
        Ok(self.stderr.write_all(text.as_bytes())?)
    }
}

/// How `stream` writes a task's output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown {
    /// The final state lines after the output, on stderr.
    pub with_state: bool,
    /// Each line after the time it was read.
    pub timestamps: bool,
}

/// Streams `request` to the terminal: the task's stdout bytes to stdout and stderr bytes to
/// stderr, unchanged or stamped, then the final state lines on stderr if `shown` says so.
pub async fn stream(
    channel: Channel,
    request: StreamRequest,
    shown: Shown,
) -> Result<(), CliError> {
    let mut events = OutputStream::open(channel, request).await.map_err(CliError::Status)?;
    let mut terminal = Terminal::new()?;
    if shown.timestamps {
        terminal.stamp_lines();
    }
    let with_state = shown.with_state;
    while let Some(message) = events.message().await.map_err(CliError::Status)? {
        match terminal.write(message)? {
            Some(status) if with_state => {
                return terminal.note(&crate::format::state_lines(&status));
            }
            Some(_) => return Ok(()),
            None => {}
        }
    }
    Err(CliError::Status(ended_early()))
}

/// The error of a stream that ended without its final status.
pub fn ended_early() -> tonic::Status {
    tonic::Status::unavailable("the stream ended before the task's final status")
}
