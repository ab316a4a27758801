//! `rrocker-cli exec [-i] [-t] ID CMD...`: run a further command inside a running task, as
//! `docker exec` does: in the task's namespaces, root, cgroups and restrictions. Its output
//! is printed as it comes; with `-i` the CLI's stdin is its stdin; with `-t` it runs on a
//! terminal of its own (with `-i`, the local terminal raw, as `run -it`). The CLI exits with
//! the command's exit code (128 + a signal's number when one ended it). Ctrl-C (off a raw
//! terminal) sends the command SIGINT.

use rrocker_proto::v1::ExecRequest;
use tonic::transport::Channel;

use crate::CliError;
use crate::interact::{Events, Followed};
use crate::output::Terminal;
use crate::run::exit_code;

/// Runs `request` in its task, passing the CLI's stdin on if `stdin`; returns the exit code
/// the CLI ends with.
pub async fn exec(channel: Channel, request: ExecRequest, stdin: bool) -> Result<u8, CliError> {
    let client = &mut crate::task_client(channel);
    let (started, mut events) = Events::exec(client, request).await?;
    let mut terminal = Terminal::new()?;
    let mut resizes = events.connect_local(&started, stdin, &mut terminal)?;
    match events.follow_passing_interrupts(&mut terminal, &mut resizes).await? {
        Followed::Ended(status) => {
            terminal.note_end(&status)?;
            Ok(exit_code(&status))
        }
        Followed::Detached => {
            terminal.note("Detached from the command; it goes on\n")?;
            Ok(0)
        }
    }
}
