//! `rrocker-cli attach ID`: follow a running task's output from now on and, when it was
//! started with its stdin open (`start -i`) and no other client writes it, pass the CLI's
//! stdin on to it, as `docker attach` does. The task's end ends it, with the task's exit
//! code; Ctrl-P Ctrl-Q detaches, leaving the task running and its stdin open for the next
//! attach; Ctrl-C is passed on to the task as SIGINT.

use rrocker_proto::v1::AttachRequest;
use tonic::transport::Channel;

use crate::CliError;
use crate::interact::{Events, Followed};
use crate::output::Terminal;
use crate::run::exit_code;

/// Attaches to the task `id` (a full id), writing its stdin if `stdin` and it can; returns
/// the exit code the CLI ends with.
pub async fn attach(channel: Channel, id: String, stdin: bool) -> Result<u8, CliError> {
    let client = &mut crate::task_client(channel);
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
    match events.follow_passing_interrupts(&mut terminal, &mut resizes).await? {
        Followed::Ended(status) => {
            terminal.note_end(&status)?;
            Ok(exit_code(&status))
        }
        Followed::Detached => {
            terminal.note(&format!("Detached from task {id}; it goes on\n"))?;
            Ok(0)
        }
    }
}
