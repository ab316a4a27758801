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
    ring: Mutex<(VecDeque<Arc<TaskEvent>>, u64)>,
    capacity: usize,
    live: broadcast::Sender<Arc<TaskEvent>>,
}

impl EventLog {
    /// A log that keeps the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        Self { ring: Mutex::new((VecDeque::with_capacity(capacity), 0)), capacity, live }
    }

    /// Records that `kind` happened to task `task_id` of `owner`, now.
    pub fn publish(&self, task_id: Uuid, owner: &str, kind: EventKind) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.1 += 1;
        let seq = ring.1;
        let event =
            Arc::new(TaskEvent { seq, at: SystemTime::now(), task_id, owner: owner.into(), kind });
        if ring.0.len() == self.capacity {
            ring.0.pop_front();
        }
        ring.0.push_back(Arc::clone(&event));
        // No watcher is not an error.
        let _ = self.live.send(event);
    }

    /// The kept events since `since` (none if `None`), and a receiver of every later one.
    pub fn subscribe(&self, since: Option<SystemTime>) -> Subscription {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let replay = match since {
            Some(since) => ring.0.iter().filter(|event| event.at >= since).cloned().collect(),
            None => Vec::new(),
        };
        (replay, self.live.subscribe())
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
}
