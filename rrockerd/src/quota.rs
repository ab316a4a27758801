//! Caps on what runs at once: tasks in all, and per identity its running tasks and the sums
//! of their memory, pids and CPU limits (`--quota-max-*`). A start takes a [`Slot`] before it
//! creates anything and the task holds it until it ends; a start that fails gives it back at
//! once. A start over a cap is refused with RESOURCE_EXHAUSTED naming the quota, its use and
//! its cap, and harms nothing already running. Admins are held to the quotas too, unless
//! `--quota-exempt-admins`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::policy::Figures;
use crate::request_error::RequestError;

/// The caps and what is running.
#[derive(Debug)]
pub struct Quota {
    max_tasks: usize,
    per_identity: Caps,
    running: Mutex<Running>,
}

/// What each identity may hold at once (0 for the figures: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Running tasks.
    pub tasks: usize,
    /// Sums of the running tasks' limits.
    pub limits: Figures,
    /// Bytes of output its tasks (running or finished, until removed) keep for replay; 0: no
    /// cap.
    pub output_bytes: u64,
    /// Admins are held to none of them but the tasks cap.
    pub exempt_admins: bool,
}

#[derive(Debug, Default)]
struct Running {
    total: usize,
    by_identity: HashMap<String, Use>,
}

/// What an identity's running tasks hold.
#[derive(Debug, Default, Clone, Copy)]
struct Use {
    tasks: usize,
    limits: Figures,
}

/// One running task's place under the caps, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    quota: Arc<Quota>,
    identity: String,
    limits: Figures,
}

impl Quota {
    /// At most `max_tasks` running tasks, and for each identity what `per_identity` allows.
    pub fn new(max_tasks: usize, per_identity: Caps) -> Arc<Self> {
        Arc::new(Self { max_tasks, per_identity, running: Mutex::default() })
    }

    /// A slot for a task of `identity` (an admin's if `admin`, whose tasks keep
    /// `kept_output()` bytes of output now: asked only when that is capped) whose limits are
    /// `limits` (0: unlimited), if every cap leaves room.
    pub fn take(
        self: &Arc<Self>,
        identity: &str,
        admin: bool,
        limits: Figures,
        kept_output: impl FnOnce() -> u64,
    ) -> Result<Slot, RequestError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.total >= self.max_tasks {
            return Err(RequestError::ResourceExhausted(format!(
                "rrockerd already runs {} tasks, its limit (--max-tasks): wait for one to end or stop one",
                self.max_tasks
            )));
        }
        let caps = self.per_identity;
        let mine = running.by_identity.get(identity).copied().unwrap_or_default();
        if mine.tasks >= caps.tasks {
            return Err(RequestError::ResourceExhausted(format!(
                "{identity} already runs {} tasks, the limit per identity (--max-tasks-per-user): wait for one to end or stop one",
                caps.tasks
            )));
        }
        if !(admin && caps.exempt_admins) {
            let kept = if caps.output_bytes == 0 { 0 } else { kept_output() };
            if caps.output_bytes != 0 && kept >= caps.output_bytes {
                return Err(RequestError::ResourceExhausted(format!(
                    "Cannot start the task: {identity}'s tasks keep {kept} bytes of output, its quota of {} (--quota-max-output-bytes); remove finished tasks (rm) to free some",
                    caps.output_bytes
                )));
            }
            let quotas = [
                ("memory", "mem", mine.limits.memory, limits.memory, caps.limits.memory),
                ("pids", "pids", mine.limits.pids, limits.pids, caps.limits.pids),
                ("CPU", "cpu", mine.limits.cpu_millis, limits.cpu_millis, caps.limits.cpu_millis),
            ];
            for (what, flag, used, asked, cap) in quotas {
                if cap == 0 {
                    continue;
                }
                // An unlimited task would take all of the quota.
                let asked_shown = if asked == 0 { "no".to_owned() } else { asked.to_string() };
                if asked == 0 || used.saturating_add(asked) > cap {
                    return Err(RequestError::ResourceExhausted(format!(
                        "Cannot start the task: {identity}'s running tasks hold {used} of its {what} quota of {cap} (--quota-max-{flag}), and this one asks {asked_shown} more; wait for one to end or stop one"
                    )));
                }
            }
        }
        let mine = running.by_identity.entry(identity.to_owned()).or_default();
        mine.tasks += 1;
        mine.limits = add(mine.limits, limits);
        running.total += 1;
        Ok(Slot { quota: Arc::clone(self), identity: identity.to_owned(), limits })
    }

    /// Each identity with running tasks, and the sums of their limits (for metrics).
    pub fn usage(&self) -> Vec<(String, usize, Figures)> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running
            .by_identity
            .iter()
            .map(|(who, held)| (who.clone(), held.tasks, held.limits))
            .collect()
    }
}

fn add(one: Figures, other: Figures) -> Figures {
    Figures {
        memory: one.memory.saturating_add(other.memory),
        pids: one.pids.saturating_add(other.pids),
        cpu_millis: one.cpu_millis.saturating_add(other.cpu_millis),
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.quota.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.total -= 1;
        if let Some(mine) = running.by_identity.get_mut(&self.identity) {
            mine.tasks -= 1;
            mine.limits = Figures {
                memory: mine.limits.memory.saturating_sub(self.limits.memory),
                pids: mine.limits.pids.saturating_sub(self.limits.pids),
                cpu_millis: mine.limits.cpu_millis.saturating_sub(self.limits.cpu_millis),
            };
            if mine.tasks == 0 {
                running.by_identity.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks_only(per_identity: usize) -> Caps {
        Caps { tasks: per_identity, ..Caps::default() }
    }

    #[test]
    fn both_task_caps_hold_and_slots_come_back() {
        let quota = Quota::new(3, tasks_only(2));
        let none = Figures::default();
        let first = quota.take("a", false, none, || 0).expect("a 1");
        let _second = quota.take("a", false, none, || 0).expect("a 2");
        let refused = quota.take("a", false, none, || 0).expect_err("a's cap");
        assert!(refused.to_string().contains("--max-tasks-per-user"), "{refused}");
        let _third = quota.take("b", false, none, || 0).expect("b 1");
        let refused = quota.take("b", false, none, || 0).expect_err("the global cap");
        assert!(refused.to_string().contains("--max-tasks)"), "{refused}");
        drop(first);
        quota.take("a", false, none, || 0).expect("a's slot is back");
    }

    #[test]
    fn an_identitys_limits_add_up_under_its_quota_and_come_back() {
        let caps = Caps {
            tasks: 100,
            limits: Figures { memory: 1000, pids: 0, cpu_millis: 0 },
            output_bytes: 100,
            exempt_admins: true,
        };
        let quota = Quota::new(100, caps);
        let task = |memory| Figures { memory, ..Figures::default() };
        let first = quota.take("alice", false, task(600), || 0).expect("600 of 1000");
        let refused = quota.take("alice", false, task(500), || 0).expect_err("over");
        assert_eq!(
            refused.to_string(),
            "Cannot start the task: alice's running tasks hold 600 of its memory quota of 1000 (--quota-max-mem), and this one asks 500 more; wait for one to end or stop one"
        );
        let unlimited = quota.take("alice", false, task(0), || 0).expect_err("no memory limit");
        assert!(unlimited.to_string().contains("asks no more"), "{unlimited}");
        quota.take("bob", false, task(900), || 0).expect("bob's own quota");
        quota.take("root", true, task(5000), || 0).expect("an exempt admin");
        drop(first);
        let _again = quota.take("alice", false, task(1000), || 0).expect("room again");
        let output = quota.take("alice", false, task(0), || 100).expect_err("output quota");
        assert!(
            output
                .to_string()
                .contains("keep 100 bytes of output, its quota of 100 (--quota-max-output-bytes)"),
            "{output}"
        );
        assert!(quota.usage().iter().any(|(who, tasks, _)| who == "alice" && *tasks == 1));
    }
}
