//! A task's terminal: a pty of the task's own devpts, whose slave is the command's
//! controlling terminal and stdio, and whose master init relays to and from its own stdio
//! (the engine's pipes): stdin into the master, the master's output (the command's stdout
//! and stderr as one stream, as a terminal shows them) out of fd 1. The master is
//! non-blocking, so that a command that does not read its terminal holds only the bytes
//! init has not yet written (init then stops reading its stdin, and the engine's writer
//! waits), and init goes on reaping and passing signals meanwhile.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use rrocker_init::terminal::WindowSize;

use crate::sys::{self, POLLIN, POLLOUT, PollFd};

const O_NOCTTY: i32 = 0o400;
const O_NONBLOCK: i32 = 0o4000;
/// EIO: what reading a master gives once its slave has no holder left.
const EIO: i32 = 5;
/// How much is relayed at a time.
const PIECE: usize = 64 * 1024;

/// A task's terminal, open, with what waits to be written into it.
#[derive(Debug)]
pub struct Relay {
    master: File,
    /// The slave's path, for the command to open.
    pub slave: CString,
    /// init's stdin, until its end.
    input: Option<File>,
    /// init's stdout.
    output: File,
    /// Input read but not yet written into the master.
    pending: Vec<u8>,
    /// Whether the master can still be read (its slave may still be held).
    readable: bool,
}

impl Relay {
    /// Opens a pty with its first `size`; init's stdin and stdout become the relay's ends.
    pub fn open(size: WindowSize) -> io::Result<Self> {
        let master = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_NOCTTY | O_NONBLOCK)
            .open("/dev/ptmx")?;
        let number = sys::unlock_pty(&master)?;
        sys::set_window_size(&master, size.rows, size.cols)?;
        let slave = CString::new(format!("/dev/pts/{number}")).map_err(|_| einval())?;
        Ok(Self {
            master,
            slave,
            input: Some(sys::inherited(0)),
            output: sys::inherited(1),
            pending: Vec::new(),
            readable: true,
        })
    }

    /// Sets the terminal's size (the command's foreground process group gets SIGWINCH).
    pub fn resize(&self, size: WindowSize) {
        let _ = sys::set_window_size(&self.master, size.rows, size.cols);
    }

    /// The fds to poll, and what for: the master for output (and for room while input is
    /// pending), stdin while nothing is pending.
    pub fn interests(&self) -> [PollFd; 2] {
        let mut master_events = if self.readable { POLLIN } else { 0 };
        if !self.pending.is_empty() {
            master_events |= POLLOUT;
        }
        let input = match &self.input {
            Some(input) if self.pending.is_empty() => input.as_raw_fd(),
            // A negative fd is ignored by poll.
            _ => -1,
        };
        // An fd is left out once nothing is wanted of it: poll reports a hung-up one
        // whatever it is asked, which would spin this loop.
        let master = if master_events == 0 { -1 } else { self.master.as_raw_fd() };
        [
            PollFd { fd: master, events: master_events, revents: 0 },
            PollFd { fd: input, events: POLLIN, revents: 0 },
        ]
    }

    /// Moves what `ready` (polled [`Self::interests`]) says can move.
    pub fn relay(&mut self, [master, input]: [PollFd; 2]) {
        if master.revents != 0 && self.readable {
            self.pass_output();
        }
        if master.revents & POLLOUT != 0 {
            self.pass_input();
        }
        if input.revents != 0 {
            self.read_input();
        }
    }

    /// Passes on what the command has written so far; at its end, all of it (its slave has
    /// no holder left then, and the kernel hands over every byte before EIO).
    pub fn drain(&mut self) {
        while self.readable && self.pass_output() {}
    }

    /// Reads the master once and writes what came to stdout; false when nothing came.
    fn pass_output(&mut self) -> bool {
        let mut piece = [0u8; PIECE];
        match self.master.read(&mut piece) {
            Ok(0) => self.readable = false,
            Ok(read) => {
                // The engine reads its pipe until init ends; a closed one drops the output.
                let _ = self.output.write_all(&piece[..read]);
                return true;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => return true,
            Err(error) if error.raw_os_error() == Some(EIO) => self.readable = false,
            Err(_) => self.readable = false,
        }
        false
    }

    /// Writes pending input into the master, as much as it takes.
    fn pass_input(&mut self) {
        match self.master.write(&self.pending) {
            Ok(written) => drop(self.pending.drain(..written)),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            // Nobody reads the terminal any more: what was typed goes nowhere.
            Err(_) => self.pending.clear(),
        }
    }

    /// Reads a piece of stdin and tries to write it straight on.
    fn read_input(&mut self) {
        let Some(input) = &mut self.input else { return };
        let mut piece = [0u8; PIECE];
        match input.read(&mut piece) {
            Ok(0) => self.input = None,
            Ok(read) => {
                self.pending.extend_from_slice(&piece[..read]);
                self.pass_input();
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.input = None,
        }
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(crate::setup::EINVAL)
}
