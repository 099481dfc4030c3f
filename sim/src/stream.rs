//! An in-memory stand-in for the telemetry stream and its durable consumer group.
//!
//! Modelled after Redis 7, only as far as the durable writer depends on it:
//! - `XADD`: ids strictly increasing, from the server clock (`<ms>-<seq>`);
//! - `XREADGROUP ... >`: entries never delivered to the group, which enter the reading
//!   consumer's pending list with delivery count 1;
//! - `XREADGROUP ... <id>`: this consumer's pending entries above `id`, delivery count up
//!   by one and delivery time reset; an entry deleted meanwhile comes back as `[id, nil]`,
//!   count unchanged;
//! - `XACK`: removes ids from the pending list, whoever owns them;
//! - `XAUTOCLAIM`: from a cursor, at most `10 x COUNT` pending entries scanned, those idle
//!   for `min-idle` ms (by the server clock) move to the claiming consumer with their
//!   delivery count up by one; pending ids whose entries were deleted are dropped from the
//!   pending list and reported; the reply's cursor is the next id to scan, `0-0` at the end;
//! - `XDEL`: the entry leaves the stream, its pending-list reference stays.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Included, Unbounded};

use bytes::Bytes;
use processor_core::stream::EntryId;

/// An entry handed out by a read or a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: EntryId,
    /// The entry's `payload` field: `None` when it has none, or when the entry was deleted.
    pub payload: Option<Bytes>,
    /// Deleted from the stream while pending (`XREADGROUP` by id answers `[id, nil]`).
    pub deleted: bool,
    /// The group's delivery count for this entry after this delivery.
    pub deliveries: u64,
}

impl Delivery {
    /// The entry as the core takes it: a deleted entry has no payload.
    pub fn into_entry(self) -> processor_core::stream::StreamEntry {
        processor_core::stream::StreamEntry {
            id: self.id,
            payload: if self.deleted { None } else { self.payload },
            deliveries: self.deliveries,
        }
    }
}

/// The reply to one `XAUTOCLAIM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AutoClaim {
    pub next_cursor: EntryId,
    pub claimed: Vec<Delivery>,
    /// Pending ids whose entries no longer exist; they have left the pending list.
    pub deleted: Vec<EntryId>,
}

impl AutoClaim {
    /// The reply as the durable writer takes it.
    pub fn into_result(self) -> processor_core::durable::ClaimResult {
        processor_core::durable::ClaimResult {
            next_cursor: self.next_cursor,
            entries: self.claimed.into_iter().map(Delivery::into_entry).collect(),
            deleted: self.deleted,
        }
    }
}

/// One entry of the group's pending list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub consumer: String,
    /// Server time of the last delivery, for idle times.
    pub delivered_at: u64,
    pub deliveries: u64,
}

/// The stream and its one consumer group.
#[derive(Debug, Clone, Default)]
pub struct MemStream {
    /// Entry id to its `payload` field (`None`: the entry has no such field).
    entries: BTreeMap<EntryId, Option<Bytes>>,
    last_id: EntryId,
    /// The group's last-delivered id (`0-0`: created at the start of the stream).
    last_delivered: EntryId,
    pel: BTreeMap<EntryId, Pending>,
    consumers: BTreeMap<String, BTreeSet<EntryId>>,
}

impl MemStream {
    pub fn new() -> MemStream {
        MemStream::default()
    }

    /// `XADD key * payload ...` at server time `now`.
    pub fn add(&mut self, now: u64, payload: Option<Bytes>) -> EntryId {
        let id = if now > self.last_id.ms {
            EntryId::new(now, 0)
        } else {
            EntryId::new(self.last_id.ms, self.last_id.seq + 1)
        };
        // `0-0` is not a valid entry id.
        let id = if id == EntryId::default() {
            EntryId::new(0, 1)
        } else {
            id
        };
        self.entries.insert(id, payload);
        self.last_id = id;
        id
    }

    /// `XDEL`. True when the entry existed.
    pub fn delete(&mut self, id: EntryId) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// `XREADGROUP GROUP g consumer COUNT count STREAMS key >` at server time `now`
    /// (`count` 0: no limit).
    pub fn read_new(&mut self, consumer: &str, count: usize, now: u64) -> Vec<Delivery> {
        let limit = if count == 0 { usize::MAX } else { count };
        let fresh: Vec<(EntryId, Option<Bytes>)> = self
            .entries
            .range((Excluded(self.last_delivered), Unbounded))
            .take(limit)
            .map(|(id, payload)| (*id, payload.clone()))
            .collect();
        let owned = self.consumers.entry(consumer.to_owned()).or_default();
        let mut out = Vec::with_capacity(fresh.len());
        for (id, payload) in fresh {
            self.last_delivered = id;
            owned.insert(id);
            self.pel.insert(
                id,
                Pending {
                    consumer: consumer.to_owned(),
                    delivered_at: now,
                    deliveries: 1,
                },
            );
            out.push(Delivery {
                id,
                payload,
                deleted: false,
                deliveries: 1,
            });
        }
        out
    }

    /// `XREADGROUP GROUP g consumer COUNT count STREAMS key <after>`: this consumer's pending
    /// entries with ids above `after`.
    pub fn read_pending(
        &mut self,
        consumer: &str,
        after: EntryId,
        count: usize,
        now: u64,
    ) -> Vec<Delivery> {
        let limit = if count == 0 { usize::MAX } else { count };
        let owned = self.consumers.entry(consumer.to_owned()).or_default();
        let ids: Vec<EntryId> = owned
            .range((Excluded(after), Unbounded))
            .take(limit)
            .copied()
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let pending = self
                .pel
                .get_mut(&id)
                .expect("a consumer's pending id is in the group's pending list");
            match self.entries.get(&id) {
                Some(payload) => {
                    pending.deliveries += 1;
                    pending.delivered_at = now;
                    out.push(Delivery {
                        id,
                        payload: payload.clone(),
                        deleted: false,
                        deliveries: pending.deliveries,
                    });
                }
                None => out.push(Delivery {
                    id,
                    payload: None,
                    deleted: true,
                    deliveries: pending.deliveries,
                }),
            }
        }
        out
    }

    /// `XACK`: how many ids were pending.
    pub fn ack(&mut self, ids: &[EntryId]) -> usize {
        let mut acked = 0;
        for id in ids {
            if let Some(pending) = self.pel.remove(id) {
                acked += 1;
                if let Some(owned) = self.consumers.get_mut(&pending.consumer) {
                    owned.remove(id);
                }
            }
        }
        acked
    }

    /// `XAUTOCLAIM key g consumer min_idle cursor COUNT count` at server time `now`.
    pub fn autoclaim(
        &mut self,
        consumer: &str,
        min_idle: u64,
        cursor: EntryId,
        count: usize,
        now: u64,
    ) -> AutoClaim {
        let count = count.max(1);
        let mut attempts = count.saturating_mul(10);
        let mut left = count;
        let mut out = AutoClaim::default();
        self.consumers.entry(consumer.to_owned()).or_default();
        let mut at = self.first_pending_from(cursor);
        while attempts > 0 && left > 0 {
            let Some(id) = at else { break };
            attempts -= 1;
            at = self.first_pending_after(id);
            if !self.entries.contains_key(&id) {
                if let Some(gone) = self.pel.remove(&id) {
                    if let Some(owned) = self.consumers.get_mut(&gone.consumer) {
                        owned.remove(&id);
                    }
                }
                out.deleted.push(id);
                left -= 1;
                continue;
            }
            let pending = self.pel.get_mut(&id).expect("scanned id is pending");
            if now.saturating_sub(pending.delivered_at) < min_idle {
                continue;
            }
            let previous = std::mem::replace(&mut pending.consumer, consumer.to_owned());
            pending.deliveries += 1;
            pending.delivered_at = now;
            let deliveries = pending.deliveries;
            if let Some(owned) = self.consumers.get_mut(&previous) {
                owned.remove(&id);
            }
            self.consumers
                .get_mut(consumer)
                .expect("claiming consumer exists")
                .insert(id);
            out.claimed.push(Delivery {
                id,
                payload: self.entries.get(&id).cloned().flatten(),
                deleted: false,
                deliveries,
            });
            left -= 1;
        }
        out.next_cursor = at.unwrap_or_default();
        out
    }

    fn first_pending_from(&self, id: EntryId) -> Option<EntryId> {
        self.pel
            .range((Included(id), Unbounded))
            .next()
            .map(|(k, _)| *k)
    }

    fn first_pending_after(&self, id: EntryId) -> Option<EntryId> {
        self.pel
            .range((Excluded(id), Unbounded))
            .next()
            .map(|(k, _)| *k)
    }

    /// The group's pending list, all consumers together.
    pub fn pending(&self) -> &BTreeMap<EntryId, Pending> {
        &self.pel
    }

    /// One consumer's pending ids.
    pub fn pending_of(&self, consumer: &str) -> Vec<EntryId> {
        self.consumers
            .get(consumer)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The removal script of the durable consumer (`XPENDING` for the consumer, then
    /// `XGROUP DELCONSUMER` only when it holds nothing). True when it was removed.
    pub fn remove_consumer_unless_pending(&mut self, consumer: &str) -> bool {
        if self
            .consumers
            .get(consumer)
            .is_some_and(|ids| !ids.is_empty())
        {
            return false;
        }
        self.consumers.remove(consumer);
        true
    }

    /// Consumers the group knows, with how many entries each has pending.
    pub fn consumers(&self) -> BTreeMap<String, usize> {
        self.consumers
            .iter()
            .map(|(name, ids)| (name.clone(), ids.len()))
            .collect()
    }

    /// Entries in the stream never delivered to the group.
    pub fn undelivered(&self) -> usize {
        self.entries
            .range((Excluded(self.last_delivered), Unbounded))
            .count()
    }

    pub fn contains(&self, id: EntryId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Ids of the entries in the stream, in order.
    pub fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.entries.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last_id(&self) -> EntryId {
        self.last_id
    }

    /// Up to `count` entries after `cursor`, for a group read with NOACK (which keeps no
    /// pending list, only the cursor).
    pub fn after(&self, cursor: EntryId, count: usize) -> Vec<(EntryId, Option<Bytes>)> {
        self.entries
            .range((Excluded(cursor), Unbounded))
            .take(count.max(1))
            .map(|(id, payload)| (*id, payload.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn ids_increase_even_when_the_clock_does_not() {
        let mut s = MemStream::new();
        assert_eq!(s.add(5, None), EntryId::new(5, 0));
        assert_eq!(s.add(5, None), EntryId::new(5, 1));
        assert_eq!(s.add(3, None), EntryId::new(5, 2));
        assert_eq!(s.add(9, None), EntryId::new(9, 0));
        assert_eq!(MemStream::new().add(0, None), EntryId::new(0, 1));
    }

    #[test]
    fn read_new_then_pending_counts_deliveries() {
        let mut s = MemStream::new();
        let a = s.add(1, p("a"));
        let b = s.add(2, p("b"));
        let got = s.read_new("c1", 10, 100);
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a, b]);
        assert!(got.iter().all(|d| d.deliveries == 1));
        assert!(s.read_new("c2", 10, 100).is_empty());
        assert!(s.read_pending("c2", EntryId::default(), 10, 100).is_empty());
        let again = s.read_pending("c1", a, 10, 150);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].deliveries), (b, 2));
        s.delete(a);
        let gone = s.read_pending("c1", EntryId::default(), 10, 160);
        assert!(gone[0].deleted && gone[0].payload.is_none() && gone[0].deliveries == 1);
        assert_eq!(s.ack(&[a, b, b]), 2);
        assert!(s.pending().is_empty());
    }

    #[test]
    fn autoclaim_pages_and_reports_deleted() {
        let mut s = MemStream::new();
        let ids: Vec<EntryId> = (0..30).map(|i| s.add(i + 1, p("x"))).collect();
        s.read_new("dead", 30, 0);
        // COUNT 1 scans at most 10 entries: the first idle one is claimed at once.
        let page = s.autoclaim("live", 1_000, EntryId::default(), 1, 500);
        assert!(page.claimed.is_empty() && page.deleted.is_empty());
        assert_eq!(page.next_cursor, ids[10]);
        let page = s.autoclaim("live", 1_000, EntryId::default(), 2, 2_000);
        assert_eq!(page.claimed.len(), 2);
        assert_eq!(page.claimed[0].deliveries, 2);
        assert_eq!(page.next_cursor, ids[2]);
        s.delete(ids[3]);
        let page = s.autoclaim("live", 1_000, page.next_cursor, 5, 2_000);
        assert_eq!(page.deleted, vec![ids[3]]);
        assert_eq!(page.claimed.len(), 4);
        assert_eq!(page.next_cursor, ids[7]);
        assert!(!s.pending().contains_key(&ids[3]));
        let page = s.autoclaim("live", 1_000, page.next_cursor, 100, 2_000);
        assert_eq!(page.next_cursor, EntryId::default());
        assert_eq!(s.pending_of("live").len(), 29);
        assert!(s.pending_of("dead").is_empty());
    }
}
