//! `rrocker-cli stats [ID...]`: what running tasks use, live, as `docker stats` shows it:
//! CPU % (of one CPU: the change of a task's CPU time between two samples over the wall time
//! between them), memory now against its limit, pids now, and block I/O read / written.
//! The figures are the cgroup counters the daemon reads for List and Query (no thread per
//! task anywhere); a sample is taken every second. On a terminal the table is redrawn in
//! place until Ctrl-C; elsewhere, or with `--no-stream`, tables are printed one after
//! another (`--no-stream`: one, from two samples a second apart).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rrocker_proto::v1::{ListRequest, QueryRequest, TaskState, TaskStatus};
use tonic::transport::Channel;

use crate::CliError;
use crate::format::{bytes, command_line, short_id};

/// Time between samples.
const INTERVAL: Duration = Duration::from_secs(1);
/// Clears a terminal and homes its cursor.
const REDRAW: &str = "\x1b[2J\x1b[H";

/// One sample: each task's status, and when it was taken.
type Sample = (Instant, Vec<TaskStatus>);

/// Shows the use of the tasks `ids` (full ids; none: every running task the caller sees).
pub async fn stats(
    client: &mut TaskServiceClient<Channel>,
    ids: &[String],
    stream: bool,
) -> Result<u8, CliError> {
    let mut stdout = std::io::stdout().lock();
    let redraw = stream && stdout.is_terminal();
    let mut previous = sample(client, ids).await?;
    loop {
        tokio::time::sleep(INTERVAL).await;
        let current = sample(client, ids).await?;
        let table = table(&previous, &current);
        if redraw {
            write!(stdout, "{REDRAW}")?;
        }
        write!(stdout, "{table}")?;
        stdout.flush()?;
        if !stream {
            return Ok(0);
        }
        previous = current;
    }
}

async fn sample(
    client: &mut TaskServiceClient<Channel>,
    ids: &[String],
) -> Result<Sample, CliError> {
    let tasks = if ids.is_empty() {
        let listed = client.list(ListRequest {}).await.map_err(CliError::Status)?;
        listed
            .into_inner()
            .tasks
            .into_iter()
            .filter(|task| task.state() == TaskState::Running)
            .collect()
    } else {
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            let task = client.query(QueryRequest { task_id: id.clone() }).await;
            tasks.push(task.map_err(CliError::Status)?.into_inner());
        }
        tasks
    };
    Ok((Instant::now(), tasks))
}

/// The table of `current`'s tasks, their CPU % from `previous`.
fn table((then, before): &Sample, (now, after): &Sample) -> String {
    let cpu_before: HashMap<&str, u64> = before
        .iter()
        .map(|task| {
            (task.task_id.as_str(), task.usage.as_ref().map_or(0, |usage| usage.cpu_time_us))
        })
        .collect();
    let wall_us = now.duration_since(*then).as_micros().max(1) as f64;
    let mut lines = vec![format!(
        "{:<12}  {:>8}  {:>24}  {:>7}  {:>6}  {:>21}  {}\n",
        "ID", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "BLOCK I/O", "COMMAND"
    )];
    for task in after {
        let usage = task.usage.unwrap_or_default();
        let used_us = cpu_before
            .get(task.task_id.as_str())
            .map_or(0, |before| usage.cpu_time_us.saturating_sub(*before));
        let cpu = used_us as f64 / wall_us * 100.0;
        let limit = task.limits.as_ref().map_or(0, |limits| limits.memory_max_bytes);
        let (limit_text, share) = match limit {
            0 => ("unlimited".to_owned(), "--".to_owned()),
            limit => {
                let share = usage.memory_current_bytes as f64 / limit as f64 * 100.0;
                (bytes(limit), format!("{share:.2}%"))
            }
        };
        let memory = format!("{} / {limit_text}", bytes(usage.memory_current_bytes));
        let io = format!("{} / {}", bytes(usage.io_read_bytes), bytes(usage.io_write_bytes));
        let id = short_id(&task.task_id);
        lines.push(format!(
            "{id:<12}  {:>7.2}%  {memory:>24}  {share:>7}  {:>6}  {io:>21}  {}\n",
            cpu,
            usage.pids_current,
            command_line(&task.argv)
        ));
    }
    lines.concat()
}
