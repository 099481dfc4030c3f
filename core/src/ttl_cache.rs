//! [`TtlCache`]: answers read from the store a moment ago, given again without asking it
//! (an event's visibility for the hub's subscriptions, re-checks and replays; an event's
//! details for `GET /events/<id>`).

use std::collections::{BTreeMap, VecDeque};

use crate::MonoMillis;

/// Answers read recently, each trusted for `ttl_ms` after it was read. Holds at most
/// `capacity` keys; inserting one more evicts the one stored longest ago. A TTL or capacity
/// of 0 holds nothing.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl_ms: u64,
    capacity: usize,
    entries: BTreeMap<K, Cached<V>>,
    /// Insertion order, oldest first. A key inserted again leaves its earlier `(seq, key)`
    /// here; such stale pairs are skipped when evicting and compacted away.
    order: VecDeque<(u64, K)>,
    next_seq: u64,
}

#[derive(Debug, Clone)]
struct Cached<V> {
    value: V,
    stored_at: MonoMillis,
    seq: u64,
}

impl<K: Ord + Copy, V: Clone> TtlCache<K, V> {
    pub fn new(ttl_ms: u64, capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            ttl_ms,
            capacity,
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// The answer stored for `key` if it is still fresh at `now`. An entry stored after
    /// `now` (a caller whose clock went back) is not trusted.
    pub fn get(&self, key: K, now: MonoMillis) -> Option<V> {
        let cached = self.entries.get(&key)?;
        let fresh = now >= cached.stored_at && now.since(cached.stored_at) < self.ttl_ms;
        fresh.then(|| cached.value.clone())
    }

    pub fn insert(&mut self, key: K, value: V, now: MonoMillis) {
        if self.capacity == 0 || self.ttl_ms == 0 {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let cached = Cached {
            value,
            stored_at: now,
            seq,
        };
        if self.entries.insert(key, cached).is_none() {
            while self.entries.len() > self.capacity {
                self.evict_oldest(key);
            }
        }
        self.order.push_back((seq, key));
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(seq, key)| entries.get(key).is_some_and(|c| c.seq == *seq));
        }
    }

    /// Removes the entry stored longest ago, other than `keep` (the one being inserted,
    /// not yet in `order`).
    fn evict_oldest(&mut self, keep: K) {
        while let Some((seq, key)) = self.order.pop_front() {
            if key != keep && self.entries.get(&key).is_some_and(|c| c.seq == seq) {
                self.entries.remove(&key);
                return;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Visibility;
    use uuid::Uuid;

    type VisibilityCache = TtlCache<Uuid, Visibility>;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at(ms: u64) -> MonoMillis {
        MonoMillis(ms)
    }

    #[test]
    fn a_fresh_entry_is_returned_until_the_ttl_is_over() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Private, at(5_000));
        assert_eq!(cache.get(id(1), at(5_000)), Some(Visibility::Private));
        assert_eq!(cache.get(id(1), at(5_999)), Some(Visibility::Private));
        assert_eq!(cache.get(id(1), at(6_000)), None);
        assert_eq!(cache.get(id(1), at(60_000)), None);
        assert_eq!(cache.get(id(2), at(5_000)), None);
    }

    #[test]
    fn an_entry_from_the_future_is_not_trusted() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Public, at(5_000));
        assert_eq!(cache.get(id(1), at(4_999)), None);
    }

    #[test]
    fn unknown_is_cached_like_any_other_answer() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Unknown, at(0));
        assert_eq!(cache.get(id(1), at(10)), Some(Visibility::Unknown));
    }

    #[test]
    fn a_ttl_or_capacity_of_zero_holds_nothing() {
        for (ttl, capacity) in [(0, 10), (1_000, 0)] {
            let mut cache = VisibilityCache::new(ttl, capacity);
            cache.insert(id(1), Visibility::Public, at(0));
            assert!(cache.is_empty());
            assert_eq!(cache.get(id(1), at(0)), None);
        }
    }

    #[test]
    fn inserting_again_replaces_and_restarts_the_ttl() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Public, at(0));
        cache.insert(id(1), Visibility::Private, at(900));
        assert_eq!(cache.get(id(1), at(1_500)), Some(Visibility::Private));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_oldest_entry_is_evicted_when_full() {
        let mut cache = VisibilityCache::new(10_000, 2);
        cache.insert(id(1), Visibility::Public, at(0));
        cache.insert(id(2), Visibility::Public, at(1));
        cache.insert(id(3), Visibility::Private, at(2));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(id(1), at(3)), None);
        assert_eq!(cache.get(id(2), at(3)), Some(Visibility::Public));
        assert_eq!(cache.get(id(3), at(3)), Some(Visibility::Private));
    }

    #[test]
    fn a_reinserted_entry_counts_as_new_for_eviction() {
        let mut cache = VisibilityCache::new(10_000, 2);
        cache.insert(id(1), Visibility::Public, at(0));
        cache.insert(id(2), Visibility::Public, at(1));
        cache.insert(id(1), Visibility::Private, at(2));
        cache.insert(id(3), Visibility::Public, at(3));
        assert_eq!(cache.get(id(2), at(4)), None);
        assert_eq!(cache.get(id(1), at(4)), Some(Visibility::Private));
        assert_eq!(cache.get(id(3), at(4)), Some(Visibility::Public));
    }

    #[test]
    fn many_reinserts_keep_the_order_queue_bounded() {
        let mut cache = VisibilityCache::new(10_000, 3);
        for t in 0..1_000u64 {
            cache.insert(id((t % 2) as u128), Visibility::Public, at(t));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.order.len() <= 6);
        cache.insert(id(7), Visibility::Private, at(1_000));
        cache.insert(id(8), Visibility::Private, at(1_001));
        assert_eq!(cache.len(), 3);
        // Of the two reinserted over and over, the one written less recently went first.
        assert_eq!(cache.get(id(0), at(1_002)), None);
        assert_eq!(cache.get(id(1), at(1_002)), Some(Visibility::Public));
    }
}
