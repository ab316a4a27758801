//! `rrocker-cli ps`: the tasks of every daemon `--addr` lists, asked at once, as docker's
//! table (or their ids, or JSON).

use std::io::Write;

use rrocker_proto::v1::{ListRequest, TaskState, TaskStatus};

use crate::{CliError, ConnectOptions, format};

/// What `ps` shows.
#[derive(Debug, Clone, Copy)]
pub struct Shown {
    /// Finished tasks too.
    pub all: bool,
    /// Ids only.
    pub quiet: bool,
    /// Whole ids and commands.
    pub no_trunc: bool,
    /// Every status as JSON.
    pub json: bool,
}

/// Lists the tasks of every daemon in `addrs`, asked at once; a daemon that cannot be asked
/// gets its one line on stderr, the others' tasks are still shown, and the exit code is 1.
pub async fn ps(options: &ConnectOptions, addrs: &[String], shown: Shown) -> Result<u8, CliError> {
    if addrs.is_empty() {
        return Err(CliError::Usage(
            "--addr (RROCKER_ADDR) names no daemon: pass HOST:PORT".into(),
        ));
    }
    let asks = addrs.iter().map(|addr| async move {
        let options = ConnectOptions { addr: addr.clone(), ..options.clone() };
        let mut client = crate::connect(&options).await?;
        let listed = client.list(ListRequest {}).await;
        let tasks = listed.map_err(|status| CliError::from_status(addr, status))?;
        Ok::<_, CliError>(tasks.into_inner().tasks)
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut failures = Vec::new();
    let mut found = Vec::new();
    for (addr, answer) in addrs.iter().zip(answers) {
        match answer {
            Ok(tasks) => found.extend(tasks.into_iter().map(|task| (addr.as_str(), task))),
            Err(error) if addrs.len() == 1 => return Err(error),
            Err(error) => failures.push(error),
        }
    }
    found.retain(|(_, task)| shown.all || !is_finished(task));
    // Newest first, as docker lists, across every host.
    found.sort_by_key(|(_, task)| std::cmp::Reverse(task.created_at_ms));
    let mut stdout = anstream::stdout().lock();
    if shown.json {
        let all = found.iter().map(|(addr, task)| {
            let mut json = format::status_json(task);
            json["host"] = serde_json::Value::from(*addr);
            json
        });
        writeln!(stdout, "{:#}", serde_json::Value::Array(all.collect()))?;
    } else if shown.quiet {
        for (_, task) in &found {
            let id = &task.task_id;
            let shown_id = if shown.no_trunc { id } else { format::short_id(id) };
            writeln!(stdout, "{shown_id}")?;
        }
    } else {
        let columns = format::PsColumns {
            host: addrs.len() > 1,
            owner: crate::organization(options).as_deref() == Some("admin"),
            no_trunc: shown.no_trunc,
        };
        let rows: Vec<_> =
            found.iter().map(|(host, status)| format::PsRow { host, status }).collect();
        write!(stdout, "{}", format::ps_table(&rows, columns, now_ms()))?;
    }
    drop(stdout);
    for failure in &failures {
        eprintln!("{failure}");
    }
    Ok(u8::from(!failures.is_empty()))
}

fn is_finished(task: &TaskStatus) -> bool {
    matches!(task.state(), TaskState::Completed | TaskState::Killed | TaskState::Failed)
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
