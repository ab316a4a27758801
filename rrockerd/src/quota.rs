//! Caps on how many tasks run at once, in all and per identity. A start takes a [`Slot`]
//! before it creates anything and the task holds it until it ends; a start that fails gives
//! it back at once. A start over a cap is refused with RESOURCE_EXHAUSTED and harms nothing
//! already running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::DaemonError;

/// The caps and what is running.
#[derive(Debug)]
pub struct Quota {
    max_tasks: usize,
    max_per_identity: usize,
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    total: usize,
    by_identity: HashMap<String, usize>,
}

/// One running task's place under the caps, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    quota: Arc<Quota>,
    identity: String,
}

impl Quota {
    /// At most `max_tasks` running tasks, at most `max_per_identity` of them one identity's.
    pub fn new(max_tasks: usize, max_per_identity: usize) -> Arc<Self> {
        Arc::new(Self { max_tasks, max_per_identity, running: Mutex::default() })
    }

    /// A slot for a task of `identity`, if both caps leave room.
    pub fn take(self: &Arc<Self>, identity: &str) -> Result<Slot, DaemonError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.total >= self.max_tasks {
            return Err(DaemonError::ResourceExhausted(format!(
                "rrockerd already runs {} tasks, its limit (--max-tasks): wait for one to end or stop one",
                self.max_tasks
            )));
        }
        let mine = running.by_identity.entry(identity.to_owned()).or_default();
        if *mine >= self.max_per_identity {
            return Err(DaemonError::ResourceExhausted(format!(
                "{identity} already runs {} tasks, the limit per identity (--max-tasks-per-user): wait for one to end or stop one",
                self.max_per_identity
            )));
        }
        *mine += 1;
        running.total += 1;
        Ok(Slot { quota: Arc::clone(self), identity: identity.to_owned() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.quota.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.total -= 1;
        if let Some(mine) = running.by_identity.get_mut(&self.identity) {
            *mine -= 1;
            if *mine == 0 {
                running.by_identity.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_caps_hold_and_slots_come_back() {
        let quota = Quota::new(3, 2);
        let first = quota.take("a").expect("a 1");
        let _second = quota.take("a").expect("a 2");
        let refused = quota.take("a").expect_err("a's cap");
        assert!(refused.to_string().contains("--max-tasks-per-user"), "{refused}");
        let _third = quota.take("b").expect("b 1");
        let refused = quota.take("b").expect_err("the global cap");
        assert!(refused.to_string().contains("--max-tasks)"), "{refused}");
        drop(first);
        quota.take("a").expect("a's slot is back");
    }
}
