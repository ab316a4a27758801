//! Caps on what one identity holds open at once: its output streams
//! (`--max-streams-per-user`) and its connections (`--max-connections-per-user`). A
//! [`OpenCap`] hands out a [`Held`] for each open stream or connection while the identity is
//! under the cap, and counts it back when the [`Held`] is dropped (the stream or connection
//! ended, however). Every identity is held to them, admins too: what they bound is the
//! daemon's memory, which is everyone's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// A cap on what each identity holds open.
#[derive(Debug)]
pub struct OpenCap {
    /// Most open at once per identity; 0: no cap.
    cap: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open thing of an identity's, counted until dropped.
#[derive(Debug)]
pub struct Held {
    from: Arc<OpenCap>,
    identity: String,
}

impl OpenCap {
    /// At most `cap` open at once per identity (0: no cap).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self { cap, open: Mutex::default() })
    }

    /// One more for `identity`, or, at its cap, the cap.
    pub fn take(self: &Arc<Self>, identity: &str) -> Result<Held, usize> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(identity.to_owned()).or_default();
        if self.cap != 0 && *count >= self.cap {
            return Err(self.cap);
        }
        *count += 1;
        Ok(Held { from: Arc::clone(self), identity: identity.to_owned() })
    }

    /// How many `identity` holds open now.
    pub fn open(&self, identity: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(identity).copied().unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.from.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.identity) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_at_its_cap_gets_no_more_until_one_is_dropped() {
        let cap = OpenCap::new(2);
        let first = cap.take("alice").expect("1 of 2");
        let _second = cap.take("alice").expect("2 of 2");
        assert_eq!(cap.take("alice").map(|_| ()), Err(2));
        let _other = cap.take("bob").expect("bob has his own");
        drop(first);
        assert_eq!(cap.open("alice"), 1);
        let _again = cap.take("alice").expect("room again");
    }

    #[test]
    fn no_cap_counts_but_never_refuses() {
        let cap = OpenCap::new(0);
        let held: Vec<_> = (0..100).map(|_| cap.take("alice").expect("no cap")).collect();
        assert_eq!(cap.open("alice"), 100);
        drop(held);
        assert_eq!(cap.open("alice"), 0);
        assert!(cap.open.lock().expect("lock").is_empty(), "no entry left behind");
    }
}
