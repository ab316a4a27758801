//! `rrocker-cli attach ID`: follow a running task's output from now on and, when it was
//! started with its stdin open (`start -i`) and no other client writes it, pass the CLI's
//! stdin on to it, as `docker attach` does. The task's end ends it, with the task's exit
//! code; Ctrl-P Ctrl-Q detaches, leaving the task running and its stdin open for the next
//! attach; Ctrl-C is passed on to the task as SIGINT.

use rrocker_proto::v1::{AttachRequest, SignalRequest};
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Channel;

use crate::CliError;
use crate::interact::{Events, Followed};
use crate::output::Terminal;
use crate::run::exit_code;

/// Attaches to the task `id` (a full id), writing its stdin if `stdin` and it can; returns
/// the exit code the CLI ends with.
pub async fn attach(channel: Channel, id: String, stdin: bool) -> Result<u8, CliError> {
    let client = &mut crate::task_client(channel);
    let mut interrupts = signal(SignalKind::interrupt())
        .map_err(|error| CliError::Usage(format!("Cannot handle signals: {error}")))?;
    let request = AttachRequest { task_id: id, stdin, ..AttachRequest::default() };
    let (started, mut events) = Events::attach(client, request).await?;
    let mut terminal = Terminal::new()?;
    let mut resizes = events.connect_local(&started, stdin, &mut terminal)?;
    let id = started.task_id;
    if started.tty
        && let Some(size) = crate::raw_terminal::size()
    {
        // The task's terminal takes this client's size, as docker attach does.
        events.resize(size).await;
    }
    loop {
        tokio::select! {
            step = events.follow(&mut terminal, &mut resizes) => match step? {
                Followed::Ended(status) => {
                    terminal.note_end(&status)?;
                    return Ok(exit_code(&status));
                }
                Followed::Detached => {
                    terminal.note(&format!("Detached from task {id}; it goes on\n"))?;
                    return Ok(0);
                }
            },
            _ = interrupts.recv() => {
                let request = SignalRequest { task_id: id.clone(), signal: "INT".into() };
                if let Err(status) = client.signal(request).await {
                    terminal.note(&format!("{}\n", status.message()))?;
                }
            }
        }
    }
}
