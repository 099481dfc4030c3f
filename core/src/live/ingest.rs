//! The ingest: what this instance's broadcast group read, judged once for every hub shard.
//!
//! Each stream entry is decoded, counted as an orphan when its device is in no event (and
//! then forgotten: an orphan is never broadcast, so the per-device rules keep no state for
//! it and live memory is bounded by the device map, not by the ids seen on the stream),
//! dropped when faulty, when not newer than its device's last accepted fix, or when it
//! implies a jump over `FAULTY_MAX_SPEED_KMH`. Each accepted position is encoded once per
//! event of its device, as a finished WebSocket frame, and the batch is shared by every
//! shard ([`Input::Batch`](super::Input::Batch)): the decisions are made once, whatever the
//! number of shards, so every shard sees the same positions in the same order.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::config::LiveConfig;
use super::device_map::DeviceMap;
use super::ordering::{Fix, Tracker, Verdict};
use crate::decode::decode_position;
use crate::faulty::{fault_reason, FaultReason, FaultyThresholds};
use crate::stream::EntryId;
use crate::websocket::Frame;
use crate::wire::{position_frame, Topic};
use crate::UnixMillis;

/// One accepted position, with its frame for each event of its device.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub device: Arc<str>,
    pub fix: Fix,
    pub frames: Vec<(Topic, Frame)>,
}

/// The accepted positions of one stream read, in stream order.
#[derive(Debug, Default)]
pub struct FanoutBatch {
    pub(crate) positions: Vec<Accepted>,
    /// Every position of a device in an event that passed the stateless faulty rules,
    /// accepted or not, in stream order: what Postgres stores as non-faulty, for the
    /// [`TrackStore`](super::TrackStore).
    pub(crate) seen: Vec<(Arc<str>, Fix)>,
    /// Fix times of positions of devices in an event dropped as in the future: the durable
    /// path judges that rule at its own, later, time and may store them as non-faulty.
    pub(crate) future: Vec<(Arc<str>, UnixMillis)>,
}

impl FanoutBatch {
    /// Accepted positions of devices in at least one event.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The fix time of each position, in batch order (for the lag histogram).
    pub fn fix_times(&self) -> impl Iterator<Item = UnixMillis> + '_ {
        self.positions.iter().map(|p| p.fix.ts)
    }
}

/// Counts of the ingest, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Stream entries read (`processor_live_broadcast_records_total`).
    pub broadcast_records: u64,
    /// Entries without a decodable payload (`processor_live_broadcast_decode_errors_total`).
    pub decode_errors: u64,
    /// Decoded records of devices in no event
    /// (`processor_live_broadcast_orphan_records_total`).
    pub orphan_records: u64,
    /// Records dropped by the stateless faulty rules.
    pub faulty_dropped: u64,
    /// Records not newer than their device's last accepted fix.
    pub stale_dropped: u64,
    /// Records implying a jump faster than the speed limit.
    pub jump_dropped: u64,
    /// Too-fast records accepted as a device's new anchor (counted in `accepted` too).
    pub reanchored: u64,
    /// Records that passed every rule (and moved their device's anchor).
    pub accepted: u64,
}

/// An input of the [`Ingest`].
#[derive(Debug, Clone)]
pub enum IngestInput {
    /// Entries read by this instance's broadcast group, in stream order.
    Entries(Vec<(EntryId, Option<Bytes>)>),
    /// A new device-to-event map; an older version than the one in use is ignored.
    DeviceMap(Arc<DeviceMap>),
}

/// Decodes and judges the stream once for every hub shard.
#[derive(Debug)]
pub struct Ingest {
    faulty: FaultyThresholds,
    map: Arc<DeviceMap>,
    tracker: Tracker,
    out: VecDeque<Arc<FanoutBatch>>,
    stats: IngestStats,
}

impl Ingest {
    pub fn new(config: &LiveConfig) -> Ingest {
        Ingest {
            faulty: config.faulty,
            map: Arc::new(DeviceMap::default()),
            tracker: Tracker::new(config.jump_rule()),
            out: VecDeque::new(),
            stats: IngestStats::default(),
        }
    }

    pub fn handle(&mut self, now: UnixMillis, input: IngestInput) {
        match input {
            IngestInput::Entries(entries) => self.entries(now, entries),
            IngestInput::DeviceMap(map) => {
                if map.supersedes(&self.map) {
                    self.map = map;
                }
            }
        }
    }

    /// The next batch for the shards and the track store; a read with no non-faulty
    /// position for any event makes none.
    pub fn poll_batch(&mut self) -> Option<Arc<FanoutBatch>> {
        self.out.pop_front()
    }

    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// The version of the device map in use; `None` before the first one.
    pub fn device_map_version(&self) -> Option<u64> {
        self.map.version()
    }

    fn entries(&mut self, now: UnixMillis, entries: Vec<(EntryId, Option<Bytes>)>) {
        let mut batch = FanoutBatch::default();
        for (_id, payload) in entries {
            self.stats.broadcast_records += 1;
            let Some(Ok(position)) = payload.as_deref().map(decode_position) else {
                self.stats.decode_errors += 1;
                continue;
            };
            let Some(events) = self.map.events_of(&position.device_id) else {
                self.stats.orphan_records += 1;
                continue;
            };
            if let Some(reason) = fault_reason(&position, now, &self.faulty) {
                self.stats.faulty_dropped += 1;
                if reason == FaultReason::InTheFuture {
                    batch
                        .future
                        .push((Arc::from(position.device_id.as_str()), position.ts));
                }
                continue;
            }
            let device: Arc<str> = Arc::from(position.device_id.as_str());
            let fix = Fix::of(&position);
            batch.seen.push((Arc::clone(&device), fix));
            match self.tracker.judge(&position) {
                Verdict::Stale => {
                    self.stats.stale_dropped += 1;
                    continue;
                }
                Verdict::Jump => {
                    self.stats.jump_dropped += 1;
                    continue;
                }
                Verdict::Reanchored => self.stats.reanchored += 1,
                Verdict::Accepted => {}
            }
            self.stats.accepted += 1;
            let frames = events
                .iter()
                .map(|event| {
                    let topic = Topic(*event);
                    (topic, position_frame(&topic, &position))
                })
                .collect();
            batch.positions.push(Accepted {
                device,
                fix,
                frames,
            });
        }
        if !batch.seen.is_empty() || !batch.future.is_empty() {
            self.out.push_back(Arc::new(batch));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{DeviceMap, LiveConfig};
    use bytes::Bytes;
    use std::collections::{BTreeMap, BTreeSet};
    use uuid::Uuid;

    const NOW: i64 = 1_764_000_000_000;

    fn fix(device: &str, ts: i64, satellites: u32) -> Option<Bytes> {
        Some(Bytes::from(format!(
            r#"{{"device_id":"{device}","timestamp":{ts},"latitude":54.0,"longitude":25.0,"satellites":{satellites}}}"#
        )))
    }

    #[test]
    fn only_fixes_dropped_as_in_the_future_are_reported_as_such() {
        let mut ingest = Ingest::new(&LiveConfig::default());
        let by_device: BTreeMap<String, BTreeSet<Uuid>> = ["a", "b", "c"]
            .into_iter()
            .map(|d| (d.to_owned(), [Uuid::from_u128(1)].into()))
            .collect();
        let now = UnixMillis(NOW);
        ingest.handle(
            now,
            IngestInput::DeviceMap(Arc::new(DeviceMap::new(1, by_device))),
        );
        ingest.handle(
            now,
            IngestInput::Entries(vec![
                // More than FAULTY_MAX_FUTURE_MS (60 s) ahead.
                (EntryId::new(1, 0), fix("a", NOW + 60_001, 9)),
                // Faulty for another reason: no satellites.
                (EntryId::new(2, 0), fix("b", NOW - 1_000, 0)),
                (EntryId::new(3, 0), fix("c", NOW - 1_000, 9)),
            ]),
        );
        let batch = ingest.poll_batch().expect("a batch");
        let future: Vec<(&str, i64)> = batch
            .future
            .iter()
            .map(|(d, ts)| (&**d, ts.as_i64()))
            .collect();
        assert_eq!(future, [("a", NOW + 60_001)]);
        assert_eq!(batch.len(), 1);
    }
}
