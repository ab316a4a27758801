//! What happened to tasks, for watchers (Watch): each task's creation, start, end and
//! removal, in one daemon-wide order. The latest are kept in a bounded ring for a watcher
//! that asks to replay them (`since`); live ones go out on a broadcast channel of the same
//! size, so that a watcher that stops reading costs a bounded amount (it is told it fell
//! behind). A publication and a subscription take the ring's lock, so a watcher's replay and
//! its live events neither overlap nor leave a gap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::state::TaskState;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The task was created.
    Created,
    /// Its command runs.
    Started,
    /// It ended, so.
    Ended(TaskState),
    /// It was forgotten with its output, for this reason.
    Removed(&'static str),
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    /// Its place in the daemon's order, from 1.
    pub seq: u64,
    /// When.
    pub at: SystemTime,
    /// Which task.
    pub task_id: Uuid,
    /// Its owner.
    pub owner: String,
    /// What happened.
    pub kind: EventKind,
}

/// The events a watcher gets: the replayed ones, then live ones.
pub type Subscription = (Vec<Arc<TaskEvent>>, broadcast::Receiver<Arc<TaskEvent>>);

/// The recent events and the channel of new ones.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<Ring>,
    capacity: usize,
}

/// What the log's lock guards.
#[derive(Debug)]
struct Ring {
    /// The kept events, oldest first.
    events: VecDeque<Arc<TaskEvent>>,
    /// The last event's `seq`.
    seq: u64,
    /// Where live events go; `None` once the log is closed.
    live: Option<broadcast::Sender<Arc<TaskEvent>>>,
}

impl EventLog {
    /// A log that keeps the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        let ring = Ring { events: VecDeque::with_capacity(capacity), seq: 0, live: Some(live) };
        Self { ring: Mutex::new(ring), capacity }
    }

    /// Records that `kind` happened to task `task_id` of `owner`, now.
    pub fn publish(&self, task_id: Uuid, owner: &str, kind: EventKind) {
        let mut ring = self.lock();
        ring.seq += 1;
        let seq = ring.seq;
        let event =
            Arc::new(TaskEvent { seq, at: SystemTime::now(), task_id, owner: owner.into(), kind });
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::clone(&event));
        // No watcher is not an error.
        if let Some(live) = &ring.live {
            let _ = live.send(event);
        }
    }

    /// Ends every watcher's live part once it has read what was published so far (the
    /// daemon is shutting down: a watch would otherwise never end). Later events are still
    /// kept, for nobody.
    pub fn close(&self) {
        self.lock().live = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept events since `since` (none if `None`), and a receiver of every later one.
    pub fn subscribe(&self, since: Option<SystemTime>) -> Subscription {
        let ring = self.lock();
        let replay = match since {
            Some(since) => ring.events.iter().filter(|event| event.at >= since).cloned().collect(),
            None => Vec::new(),
        };
        // Once closed: a receiver whose sender is gone, which ends at once.
        let live =
            ring.live.as_ref().map_or_else(|| broadcast::channel(1).1, |live| live.subscribe());
        (replay, live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_replays_then_follows_without_gap_or_overlap() {
        let log = EventLog::new(3);
        let (task, owner) = (Uuid::new_v4(), "client1");
        log.publish(task, owner, EventKind::Created);
        log.publish(task, owner, EventKind::Started);
        let (replayed, mut live) = log.subscribe(Some(SystemTime::UNIX_EPOCH));
        log.publish(task, owner, EventKind::Removed("rm"));
        let seqs: Vec<u64> = replayed.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(live.try_recv().expect("live").seq, 3);
        // The ring keeps the last three.
        log.publish(task, owner, EventKind::Created);
        let (replayed, _) = log.subscribe(Some(SystemTime::UNIX_EPOCH));
        assert_eq!(replayed.iter().map(|event| event.seq).collect::<Vec<_>>(), [2, 3, 4]);
        let (nothing, _) = log.subscribe(None);
        assert!(nothing.is_empty());
    }

    #[test]
    fn a_watcher_that_falls_behind_is_told_and_holds_no_more_than_the_ring() {
        let log = EventLog::new(4);
        let (_, mut live) = log.subscribe(None);
        for _ in 0..10 {
            log.publish(Uuid::new_v4(), "client1", EventKind::Created);
        }
        assert!(matches!(live.try_recv(), Err(broadcast::error::TryRecvError::Lagged(6))));
        assert_eq!(live.try_recv().expect("the kept ones").seq, 7);
    }

    #[test]
    fn a_closed_log_ends_its_watchers_after_what_they_have_not_read() {
        let log = EventLog::new(4);
        let (_, mut live) = log.subscribe(None);
        log.publish(Uuid::new_v4(), "client1", EventKind::Created);
        log.close();
        assert_eq!(live.try_recv().expect("published before the close").seq, 1);
        assert_eq!(live.try_recv(), Err(broadcast::error::TryRecvError::Closed));
        let (replayed, mut late) = log.subscribe(Some(SystemTime::UNIX_EPOCH));
        assert_eq!(replayed.len(), 1);
        assert_eq!(late.try_recv(), Err(broadcast::error::TryRecvError::Closed));
    }
}
