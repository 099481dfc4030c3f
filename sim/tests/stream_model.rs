//! State-machine property test of the Redis stand-in: random sequences of XADD, XDEL,
//! XREADGROUP (`>` and by id), XACK, XAUTOCLAIM and clock steps, run against `MemStream` and
//! against a deliberately naive reference (flat vectors, linear scans); every reply and the
//! whole pending list must agree after every step.

use bytes::Bytes;
use processor_core::stream::EntryId;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sim::stream::{AutoClaim, Delivery, MemStream};

const CONSUMERS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Add {
        payload: bool,
    },
    Delete(usize),
    ReadNew {
        consumer: usize,
        count: usize,
    },
    ReadPending {
        consumer: usize,
        after: usize,
        count: usize,
    },
    Ack(Vec<usize>),
    Claim {
        consumer: usize,
        min_idle: u64,
        cursor: usize,
        count: usize,
    },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|payload| Op::Add { payload }),
        1 => any::<usize>().prop_map(Op::Delete),
        2 => (0..3usize, 0..5usize).prop_map(|(consumer, count)| Op::ReadNew { consumer, count }),
        2 => (0..3usize, any::<usize>(), 0..5usize)
            .prop_map(|(consumer, after, count)| Op::ReadPending { consumer, after, count }),
        2 => prop::collection::vec(any::<usize>(), 0..4).prop_map(Op::Ack),
        2 => (0..3usize, 0..40u64, any::<usize>(), 1..4usize).prop_map(
            |(consumer, min_idle, cursor, count)| Op::Claim { consumer, min_idle, cursor, count }
        ),
        2 => prop_oneof![Just(0u64), 1..30u64].prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct RefPending {
    id: EntryId,
    consumer: String,
    at: u64,
    count: u64,
}

/// The reference: everything in flat vectors, found by scanning.
#[derive(Debug, Default)]
struct Reference {
    /// Every id ever added, with its payload and whether it still exists.
    entries: Vec<(EntryId, Option<Bytes>, bool)>,
    last_delivered: EntryId,
    /// Sorted by id.
    pel: Vec<RefPending>,
}

impl Reference {
    fn add(&mut self, now: u64, payload: Option<Bytes>) -> EntryId {
        let last = self.entries.last().map(|e| e.0).unwrap_or_default();
        let id = if now > last.ms {
            EntryId::new(now, 0)
        } else {
            EntryId::new(last.ms, last.seq + 1)
        };
        self.entries.push((id, payload, true));
        id
    }

    fn exists(&self, id: EntryId) -> Option<&Option<Bytes>> {
        self.entries.iter().find(|e| e.0 == id && e.2).map(|e| &e.1)
    }

    fn read_new(&mut self, consumer: &str, count: usize, now: u64) -> Vec<Delivery> {
        let limit = if count == 0 { usize::MAX } else { count };
        let fresh: Vec<(EntryId, Option<Bytes>)> = self
            .entries
            .iter()
            .filter(|e| e.2 && e.0 > self.last_delivered)
            .take(limit)
            .map(|e| (e.0, e.1.clone()))
            .collect();
        let mut out = Vec::new();
        for (id, payload) in fresh {
            self.last_delivered = id;
            self.pel.push(RefPending {
                id,
                consumer: consumer.into(),
                at: now,
                count: 1,
            });
            self.pel.sort_by_key(|p| p.id);
            out.push(Delivery {
                id,
                payload,
                deleted: false,
                deliveries: 1,
            });
        }
        out
    }

    fn read_pending(
        &mut self,
        consumer: &str,
        after: EntryId,
        count: usize,
        now: u64,
    ) -> Vec<Delivery> {
        let limit = if count == 0 { usize::MAX } else { count };
        let ids: Vec<EntryId> = self
            .pel
            .iter()
            .filter(|p| p.consumer == consumer && p.id > after)
            .take(limit)
            .map(|p| p.id)
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let payload = self.exists(id).cloned();
            let p = self.pel.iter_mut().find(|p| p.id == id).unwrap();
            match payload {
                Some(payload) => {
                    p.count += 1;
                    p.at = now;
                    out.push(Delivery {
                        id,
                        payload,
                        deleted: false,
                        deliveries: p.count,
                    });
                }
                None => out.push(Delivery {
                    id,
                    payload: None,
                    deleted: true,
                    deliveries: p.count,
                }),
            }
        }
        out
    }

    fn ack(&mut self, ids: &[EntryId]) -> usize {
        let before = self.pel.len();
        self.pel.retain(|p| !ids.contains(&p.id));
        before - self.pel.len()
    }

    fn claim(
        &mut self,
        consumer: &str,
        min_idle: u64,
        cursor: EntryId,
        count: usize,
        now: u64,
    ) -> AutoClaim {
        let candidates: Vec<EntryId> = self
            .pel
            .iter()
            .filter(|p| p.id >= cursor)
            .map(|p| p.id)
            .collect();
        let mut attempts = count * 10;
        let mut left = count;
        let mut i = 0;
        let mut out = AutoClaim::default();
        while attempts > 0 && left > 0 && i < candidates.len() {
            attempts -= 1;
            let id = candidates[i];
            i += 1;
            let Some(payload) = self.exists(id).cloned() else {
                self.pel.retain(|p| p.id != id);
                out.deleted.push(id);
                left -= 1;
                continue;
            };
            let p = self.pel.iter_mut().find(|p| p.id == id).unwrap();
            if now.saturating_sub(p.at) < min_idle {
                continue;
            }
            p.consumer = consumer.into();
            p.count += 1;
            p.at = now;
            out.claimed.push(Delivery {
                id,
                payload,
                deleted: false,
                deliveries: p.count,
            });
            left -= 1;
        }
        out.next_cursor = candidates.get(i).copied().unwrap_or_default();
        out
    }
}

/// An id to name in a command: `0-0`, one that was added, or one just past it.
fn pick_id(reference: &Reference, i: usize) -> EntryId {
    let n = reference.entries.len();
    match i % (2 * n + 1) {
        0 => EntryId::default(),
        k if k <= n => reference.entries[k - 1].0,
        k => {
            let id = reference.entries[k - n - 1].0;
            EntryId::new(id.ms, id.seq + 1)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/stream_model.txt"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mem_stream_agrees_with_the_reference(ops in prop::collection::vec(op(), 1..80)) {
        let mut stream = MemStream::new();
        let mut reference = Reference::default();
        let mut now = 1u64;
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Add { payload } => {
                    let payload = payload.then(|| Bytes::from(format!("p{step}")));
                    prop_assert_eq!(stream.add(now, payload.clone()), reference.add(now, payload));
                }
                Op::Delete(i) => {
                    if !reference.entries.is_empty() {
                        let k = i % reference.entries.len();
                        let id = reference.entries[k].0;
                        let existed = reference.entries[k].2;
                        reference.entries[k].2 = false;
                        prop_assert_eq!(stream.delete(id), existed);
                    }
                }
                Op::ReadNew { consumer, count } => {
                    let c = CONSUMERS[*consumer];
                    prop_assert_eq!(stream.read_new(c, *count, now), reference.read_new(c, *count, now));
                }
                Op::ReadPending { consumer, after, count } => {
                    let c = CONSUMERS[*consumer];
                    let after = pick_id(&reference, *after);
                    prop_assert_eq!(
                        stream.read_pending(c, after, *count, now),
                        reference.read_pending(c, after, *count, now)
                    );
                }
                Op::Ack(picks) => {
                    let ids: Vec<EntryId> = picks.iter().map(|i| pick_id(&reference, *i)).collect();
                    prop_assert_eq!(stream.ack(&ids), reference.ack(&ids));
                }
                Op::Claim { consumer, min_idle, cursor, count } => {
                    let c = CONSUMERS[*consumer];
                    let cursor = pick_id(&reference, *cursor);
                    prop_assert_eq!(
                        stream.autoclaim(c, *min_idle, cursor, *count, now),
                        reference.claim(c, *min_idle, cursor, *count, now)
                    );
                }
                Op::Advance(ms) => now += ms,
            }
            let pel: Vec<RefPending> = stream
                .pending()
                .iter()
                .map(|(id, p)| RefPending { id: *id, consumer: p.consumer.clone(), at: p.delivered_at, count: p.deliveries })
                .collect();
            prop_assert_eq!(&pel, &reference.pel, "pending lists differ after step {}", step);
            for c in CONSUMERS {
                let mine: Vec<EntryId> = reference.pel.iter().filter(|p| p.consumer == c).map(|p| p.id).collect();
                prop_assert_eq!(stream.pending_of(c), mine);
            }
            let undelivered = reference.entries.iter().filter(|e| e.2 && e.0 > reference.last_delivered).count();
            prop_assert_eq!(stream.undelivered(), undelivered);
        }
    }
}
