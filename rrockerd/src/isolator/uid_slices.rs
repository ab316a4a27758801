//! Host uid/gid slices: `--uid-range` is a pool cut into slices of [`SLICE`] ids, and each
//! identity (certificate CN) that has tasks holds one of its own, so that two tenants' tasks
//! never share a host uid, nor the kernel's per-uid quotas (pipe buffer pages, inotify and
//! epoll watches, RLIMIT_NPROC). An identity takes a slice with its first task and gives it
//! back once its last task has released everything it held; the lowest free slice is
//! taken first. A full pool refuses a start with RESOURCE_EXHAUSTED naming the flag. An
//! unprivileged daemon has one mapping only (its own uid), shared by every identity.
//!
//! Pure bookkeeping: what to do with a slice that frees (unmount its image views) is the
//! caller's, done under the pool's lock so that no start can take the slice meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use rrocker_uring::IdMap;

use crate::request_error::RequestError;

/// Ids in a slice: a whole 16-bit range, what root and the usual users inside need.
pub const SLICE: u32 = 65_536;

/// The pool and who holds what.
#[derive(Debug)]
pub struct UidSlices {
    /// The first host id of slice 0.
    first: u32,
    /// How many ids a slice maps (SLICE; 1 for an unprivileged daemon's own uid).
    ids: u32,
    /// The pool as `--uid-range` gave it, for messages.
    flag: String,
    /// Every identity shares slice 0 (an unprivileged daemon).
    shared: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each identity with tasks: its slice and how many of its tasks hold it.
    held: HashMap<String, (u32, usize)>,
    free: BTreeSet<u32>,
}

impl UidSlices {
    /// The pool of `count` ids from `first` (as `--uid-range FIRST:COUNT`), cut into slices;
    /// ids past the last whole slice are left unused.
    pub fn new(first: u32, count: u32) -> Self {
        let slices = count / SLICE;
        let state = State { held: HashMap::new(), free: (0..slices).collect() };
        Self {
            first,
            ids: SLICE,
            flag: format!("{first}:{count}"),
            shared: false,
            state: Mutex::new(state),
        }
    }

    /// One mapping, `map`, that every identity shares.
    pub fn shared(map: IdMap) -> Self {
        let state = State { held: HashMap::new(), free: BTreeSet::from([0]) };
        Self {
            first: map.first_uid,
            ids: map.count,
            flag: String::new(),
            shared: true,
            state: Mutex::new(state),
        }
    }

    /// A slice for one more task of `identity`: the one it holds, or the lowest free one.
    pub fn acquire(&self, identity: &str) -> Result<u32, RequestError> {
        if self.shared {
            return Ok(0);
        }
        let mut state = self.lock();
        if let Some((slice, tasks)) = state.held.get_mut(identity) {
            *tasks += 1;
            return Ok(*slice);
        }
        let Some(slice) = state.free.pop_first() else {
            return Err(RequestError::ResourceExhausted(format!(
                "Cannot start the task: every host uid slice of --uid-range {} is held by another identity's tasks ({} slices of {SLICE} ids); widen --uid-range or wait for them to end",
                self.flag,
                state.held.len()
            )));
        };
        state.held.insert(identity.to_owned(), (slice, 1));
        Ok(slice)
    }

    /// One task of `identity` gave its slice back; if it was the last, the slice is free
    /// again once `on_free` (run under the pool's lock) has returned.
    pub fn release(&self, identity: &str, on_free: impl FnOnce(u32)) {
        if self.shared {
            return;
        }
        let mut state = self.lock();
        let Some((slice, tasks)) = state.held.get_mut(identity) else { return };
        *tasks -= 1;
        if *tasks > 0 {
            return;
        }
        let slice = *slice;
        state.held.remove(identity);
        on_free(slice);
        state.free.insert(slice);
    }

    /// The host ids of `slice`.
    pub fn id_map(&self, slice: u32) -> IdMap {
        let first = self.first + slice * self.ids;
        IdMap { first_uid: first, first_gid: first, count: self.ids }
    }

    /// How many identities hold a slice now.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_hold_disjoint_slices_until_their_last_task_gives_theirs_back() {
        let pool = UidSlices::new(100_000, 3 * SLICE + 5);
        assert_eq!(pool.acquire("alice").expect("a slice"), 0);
        assert_eq!(pool.acquire("bob").expect("a slice"), 1);
        assert_eq!(pool.acquire("alice").expect("her own"), 0);
        assert_eq!(pool.id_map(1), IdMap { first_uid: 165_536, first_gid: 165_536, count: SLICE });
        let mut freed = Vec::new();
        pool.release("alice", |slice| freed.push(slice));
        assert!(freed.is_empty(), "alice still has a task");
        pool.release("alice", |slice| freed.push(slice));
        assert_eq!(freed, [0]);
        assert_eq!(pool.held(), 1);
        assert_eq!(pool.acquire("carol").expect("the freed slice"), 0, "lowest first");
    }

    #[test]
    fn a_full_pool_refuses_naming_the_flag_and_takes_again_once_one_frees() {
        let pool = UidSlices::new(100_000, 2 * SLICE);
        pool.acquire("a").expect("slice 0");
        pool.acquire("b").expect("slice 1");
        let refused = pool.acquire("c").expect_err("full");
        assert!(matches!(refused, RequestError::ResourceExhausted(_)));
        assert!(refused.to_string().contains("--uid-range 100000:131072"), "{refused}");
        pool.release("b", |_| {});
        assert_eq!(pool.acquire("c").expect("b's slice"), 1);
        pool.release("nobody", |_| panic!("nothing to free"));
    }

    #[test]
    fn an_unprivileged_daemon_shares_its_one_mapping() {
        let map = IdMap { first_uid: 1000, first_gid: 1000, count: 1 };
        let pool = UidSlices::shared(map);
        assert_eq!((pool.acquire("a").expect("0"), pool.acquire("b").expect("0")), (0, 0));
        assert_eq!(pool.id_map(0), map);
        pool.release("a", |_| panic!("never freed"));
    }
}
