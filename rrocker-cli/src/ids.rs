//! Task ids as people type them: a full id, or any unique prefix of one (`0e6b` or the
//! 12 characters `ps` shows). [`pick`] is the pure choice among the ids the caller can see;
//! [`resolve`] asks the daemon for those ids only when the text is not a whole id.

use std::io::Write;

use rrocker_proto::v1::ListRequest;
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use tonic::transport::Channel;

use crate::CliError;

/// The length of a full id (a hyphenated UUID).
const FULL_ID: usize = 36;

/// The id that `text` names among `ids`: the one id it is a prefix of. `None` when no id
/// starts with it (the daemon then answers for the text itself, as for any missing task);
/// an error naming the candidates when several do.
pub fn pick<'a>(
    text: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Option<String>, CliError> {
    if text.is_empty() {
        return Ok(None);
    }
    let matches: Vec<&str> = ids.into_iter().filter(|id| id.starts_with(text)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        several => {
            let shown: Vec<&str> =
                several.iter().take(3).map(|id| crate::format::short_id(id)).collect();
            let more = if several.len() > 3 { ", ..." } else { "" };
            Err(CliError::Usage(format!(
                "Task id prefix '{text}' is ambiguous: it matches {} tasks ({}{more}); give more of the id",
                several.len(),
                shown.join(", ")
            )))
        }
    }
}

/// Acts on every task `texts` names (ids or unique prefixes), all at once: `act` gets a
/// client and the full id and returns the line to print. The lines are printed in the order
/// of `texts`; a task that fails gets its one line on stderr. With one id its failure is the
/// error; with several, the exit code is 1 if any failed.
pub async fn for_each<F, Fut>(
    client: &TaskServiceClient<Channel>,
    addr: &str,
    texts: &[String],
    act: F,
) -> Result<u8, CliError>
where
    F: Fn(TaskServiceClient<Channel>, String) -> Fut,
    Fut: std::future::Future<Output = Result<String, tonic::Status>>,
{
    // One List serves every prefix.
    let resolved = resolve_all(&mut client.clone(), texts).await?;
    let each = resolved.into_iter().map(|id| {
        let client = client.clone();
        let act = &act;
        async move { act(client, id?).await.map_err(CliError::Status) }
    });
    let outcomes = futures_util::future::join_all(each).await;
    let mut failures = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for outcome in outcomes {
        match outcome {
            Ok(line) => writeln!(stdout, "{line}")?,
            Err(CliError::Status(status)) => failures.push(CliError::from_status(addr, status)),
            Err(other) => failures.push(other),
        }
    }
    if texts.len() == 1
        && let Some(only) = failures.pop()
    {
        return Err(only);
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    Ok(u8::from(!failures.is_empty()))
}

/// Whether `text` is used as it is: a whole id, or empty (which names no task).
fn is_whole(text: &str) -> bool {
    text.len() == FULL_ID || text.is_empty()
}

/// The full id that `text` names: `text` itself when it is a whole id (or matches no task),
/// else the one task id it is a prefix of, among the tasks the caller can see. The List's
/// failure comes back as [`CliError::Status`].
pub async fn resolve(
    client: &mut TaskServiceClient<Channel>,
    text: &str,
) -> Result<String, CliError> {
    let mut resolved = resolve_all(client, &[text.to_owned()]).await?;
    resolved.pop().expect("one id for one text")
}

/// [`resolve`] for each of `texts`, with one List for all (none when every text is a whole
/// id); an ambiguous prefix fails alone.
async fn resolve_all(
    client: &mut TaskServiceClient<Channel>,
    texts: &[String],
) -> Result<Vec<Result<String, CliError>>, CliError> {
    let tasks = if texts.iter().all(|text| is_whole(text)) {
        Vec::new()
    } else {
        client.list(ListRequest {}).await.map_err(CliError::Status)?.into_inner().tasks
    };
    let ids = || tasks.iter().map(|task| task.task_id.as_str());
    let named = |text: &String| {
        if is_whole(text) {
            return Ok(text.clone());
        }
        Ok(pick(text, ids())?.unwrap_or_else(|| text.clone()))
    };
    Ok(texts.iter().map(named).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [&str; 3] = [
        "0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14",
        "0e6b9999-ab62-4d5e-8afe-3d8d0c36fb14",
        "c94b7817-4786-4de5-8ee7-e4012360d0a9",
    ];

    #[test]
    fn a_unique_prefix_names_its_task() {
        assert_eq!(pick("c", IDS).ok().flatten().as_deref(), Some(IDS[2]));
        assert_eq!(pick("0e6b1", IDS).ok().flatten().as_deref(), Some(IDS[0]));
        assert_eq!(pick(IDS[1], IDS).ok().flatten().as_deref(), Some(IDS[1]));
    }

    #[test]
    fn no_match_and_empty_text_name_nothing() {
        assert!(matches!(pick("f", IDS), Ok(None)));
        assert!(matches!(pick("", IDS), Ok(None)));
    }

    #[test]
    fn an_ambiguous_prefix_says_which_tasks_it_matches() {
        let error = pick("0e6b", IDS).expect_err("ambiguous").to_string();
        assert_eq!(
            error,
            "Task id prefix '0e6b' is ambiguous: it matches 2 tasks (0e6b1e8c-ab6, 0e6b9999-ab6); give more of the id"
        );
    }
}
