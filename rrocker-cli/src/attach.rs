//! `rrocker-cli attach ID`: follow a running task's output from now on and, when it was
//! started with its stdin open (`start -i`) and no other client writes it, pass the CLI's
//! stdin on to it, as `docker attach` does. The task's end ends it, with the task's exit
//! code; Ctrl-P Ctrl-Q detaches, leaving the task running and its stdin open for the next
//! attach; Ctrl-C is passed on to the task as SIGINT.

use rrocker_proto::v1::{AttachRequest, SignalRequest, TaskState};
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Channel;

use crate::interact::Events;
use crate::output::{Terminal, ended_early};
use crate::run::exit_code;
use crate::{CliError, format};

/// Attaches to the task `id` (a full id), writing its stdin if `stdin` and it can; returns
/// the exit code the CLI ends with.
pub async fn attach(channel: Channel, id: String, stdin: bool) -> Result<u8, CliError> {
    let client = &mut crate::task_client(channel);
    let mut interrupts = signal(SignalKind::interrupt())
        .map_err(|error| CliError::Usage(format!("Cannot handle signals: {error}")))?;
    let request = AttachRequest { task_id: id, stdin, ..AttachRequest::default() };
    let (id, mut events, writes) = Events::attach(client, request).await?;
    if writes {
        events.pass_stdin();
    }
    let mut terminal = Terminal::new()?;
    loop {
        tokio::select! {
            message = events.message() => {
                let message = message.map_err(CliError::Status)?;
                if message.is_none() && events.detached() {
                    terminal.note(&format!("Detached from task {id}; it goes on\n"))?;
                    return Ok(0);
                }
                let message = message.ok_or_else(|| CliError::Status(ended_early()))?;
                if let Some(status) = terminal.write(message)? {
                    if status.state() != TaskState::Completed {
                        terminal.note(&format::state_lines(&status))?;
                    }
                    return Ok(exit_code(&status));
                }
            }
            _ = interrupts.recv() => {
                let request = SignalRequest { task_id: id.clone(), signal: "INT".into() };
                if let Err(status) = client.signal(request).await {
                    terminal.note(&format!("{}\n", status.message()))?;
                }
            }
        }
    }
}
