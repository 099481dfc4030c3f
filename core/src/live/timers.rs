//! One timer for many deadlines: the next deadline of each key (a connection's ping, its
//! stalled write, its token's expiry, a subscription's visibility re-check), in a sorted
//! set.
//!
//! Idle connections cost one entry each, and the shell sleeps on a single deadline (the
//! first one) instead of one timer per connection.

use std::collections::{BTreeMap, BTreeSet};

use crate::MonoMillis;

/// Deadlines are monotonic (`MonoMillis`), except token expiries, which are wall-clock
/// instants by contract.
#[derive(Debug)]
pub(crate) struct Deadlines<K: Ord + Copy, T: Ord + Copy = MonoMillis> {
    due: BTreeSet<(T, K)>,
    at: BTreeMap<K, T>,
}

impl<K: Ord + Copy, T: Ord + Copy> Default for Deadlines<K, T> {
    fn default() -> Self {
        Deadlines {
            due: BTreeSet::new(),
            at: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy, T: Ord + Copy> Deadlines<K, T> {
    /// Schedules `key` at `t`, replacing its previous time.
    pub(crate) fn schedule(&mut self, key: K, t: T) {
        self.cancel(key);
        self.due.insert((t, key));
        self.at.insert(key, t);
    }

    pub(crate) fn cancel(&mut self, key: K) {
        if let Some(t) = self.at.remove(&key) {
            self.due.remove(&(t, key));
        }
    }

    pub(crate) fn contains(&self, key: K) -> bool {
        self.at.contains_key(&key)
    }

    pub(crate) fn first(&self) -> Option<T> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Takes every key due at `now`, earliest first (ties in key order).
    pub(crate) fn take_due(&mut self, now: T) -> Vec<K> {
        let mut taken = Vec::new();
        while let Some(&(t, key)) = self.due.first() {
            if t > now {
                break;
            }
            self.due.pop_first();
            self.at.remove(&key);
            taken.push(key);
        }
        taken
    }

    /// Cancels every key `matches` picks.
    pub(crate) fn cancel_where(&mut self, matches: impl Fn(&K) -> bool) {
        let keys: Vec<K> = self.at.keys().filter(|k| matches(k)).copied().collect();
        for key in keys {
            self.cancel(key);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.due.clear();
        self.at.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At shutdown the hub clears its deadlines; nothing may be due or waited for after.
    #[test]
    fn clear_forgets_every_deadline() {
        let mut d = Deadlines::default();
        d.schedule(1u64, MonoMillis(10));
        d.schedule(2, MonoMillis(20));
        d.clear();
        assert_eq!(d.first(), None);
        assert!(!d.contains(1) && !d.contains(2));
        assert_eq!(d.take_due(MonoMillis(u64::MAX)), Vec::<u64>::new());
        // Still usable: a key scheduled again is due once, at its new time.
        d.schedule(1, MonoMillis(30));
        assert_eq!(d.first(), Some(MonoMillis(30)));
        assert_eq!(d.take_due(MonoMillis(30)), vec![1]);
    }
}
