//! Which finished tasks the registry forgets, and when: past `--max-finished-tasks`, the
//! oldest, each time from the identity that keeps the most (so that one busy identity does
//! not push out everyone else's); past `--retain-finished`, any. Ends come in order and the
//! retention time is the same for all, so the tasks to expire wait in one queue, in order,
//! for one timer ([`Expirations`]) rather than a timer each.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// How long finished tasks (their status and output) are kept, and how many at most.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The time a finished task is kept after its end (`--retain-finished`).
    pub keep_for: Duration,
    /// The most finished tasks kept (`--max-finished-tasks`).
    pub most: usize,
}

/// A finished task, as the choice of which to forget sees it.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// Its id.
    pub id: Uuid,
    /// Its owner.
    pub owner: &'a str,
    /// When it ended.
    pub ended: Option<SystemTime>,
}

/// The finished tasks to forget so that at most `most` are kept: the oldest of the identity
/// that keeps the most, one at a time (of equals, the identity whose oldest is older).
pub fn over_the_cap(finished: &[Finished<'_>], most: usize) -> Vec<Uuid> {
    if finished.len() <= most {
        return Vec::new();
    }
    let mut by_owner: HashMap<&str, VecDeque<Finished<'_>>> = HashMap::new();
    let mut oldest_first = finished.to_vec();
    oldest_first.sort_by_key(|task| task.ended);
    for task in oldest_first {
        by_owner.entry(task.owner).or_default().push_back(task);
    }
    let mut forgotten = Vec::with_capacity(finished.len() - most);
    for _ in most..finished.len() {
        let busiest = by_owner
            .values_mut()
            .max_by(|one, other| {
                let oldest = |tasks: &VecDeque<Finished<'_>>| tasks.front().map(|task| task.ended);
                one.len().cmp(&other.len()).then_with(|| oldest(other).cmp(&oldest(one)))
            })
            .and_then(VecDeque::pop_front);
        match busiest {
            Some(task) => forgotten.push(task.id),
            None => break,
        }
    }
    forgotten
}

/// Finished tasks waiting for their retention time to pass, in the order they ended.
#[derive(Debug, Default)]
pub struct Expirations {
    queue: Mutex<VecDeque<(Instant, Uuid)>>,
    added: Notify,
}

impl Expirations {
    /// Adds a task that has just ended, to expire at `at`.
    pub fn add(&self, id: Uuid, at: Instant) {
        self.lock().push_back((at, id));
        self.added.notify_one();
    }

    /// Waits for the next task whose time has come.
    pub async fn next(&self) -> Uuid {
        loop {
            let front = self.lock().front().copied();
            match front {
                Some((at, id)) if at <= Instant::now() => {
                    self.lock().pop_front();
                    return id;
                }
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => self.added.notified().await,
            }
        }
    }

    /// Drops the waiting ids `kept` says are no longer kept (removed sooner), once there are
    /// more than twice `alive` of them.
    pub fn compact(&self, alive: usize, kept: impl Fn(&Uuid) -> bool) {
        let mut queue = self.lock();
        if queue.len() > 2 * alive.max(16) {
            queue.retain(|(_, id)| kept(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Uuid)>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
    }

    #[test]
    fn over_the_cap_the_busiest_identity_loses_its_oldest_first() {
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let finished = [
            Finished { id: ids[0], owner: "alice", ended: at(1) },
            Finished { id: ids[1], owner: "bob", ended: at(2) },
            Finished { id: ids[2], owner: "alice", ended: at(3) },
            Finished { id: ids[3], owner: "alice", ended: at(4) },
            Finished { id: ids[4], owner: "bob", ended: at(5) },
            Finished { id: ids[5], owner: "alice", ended: at(6) },
        ];
        assert!(over_the_cap(&finished, 6).is_empty());
        // alice keeps 4, bob 2: alice's two oldest go, then the tie goes by the oldest.
        assert_eq!(over_the_cap(&finished, 4), [ids[0], ids[2]]);
        assert_eq!(over_the_cap(&finished, 3), [ids[0], ids[2], ids[1]]);
        assert_eq!(over_the_cap(&finished, 0).len(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn expirations_come_in_order_when_their_time_does() {
        let expirations = Expirations::default();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        expirations.add(first, now + Duration::from_secs(10));
        expirations.add(second, now + Duration::from_secs(20));
        assert_eq!(expirations.next().await, first);
        assert!(Instant::now() >= now + Duration::from_secs(10));
        assert_eq!(expirations.next().await, second);
        assert!(Instant::now() >= now + Duration::from_secs(20));
    }
}
