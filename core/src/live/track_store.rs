//! The instance's memory of each device's recent track, so that a snapshot with history
//! (a trail, a resume, or just the newest position) does not cost a Postgres read per
//! device on every subscribe.
//!
//! The ingest (which runs once per instance) records every position that passes the
//! stateless faulty rules, whether or not the live path then accepts it: that is what
//! Postgres holds as non-faulty, so what the store answers for a device is what Postgres
//! would answer, read with the same statements' semantics (the newest fix, then the even
//! sample of its window, or everything after `since`). The hub's per-device rules then run
//! over either source alike.
//!
//! A device is answered from memory only when the memory is complete for what the query
//! asks: every fix of the device with `ts` at or after its `complete_from` is held. That
//! starts at the later of the device's first recorded fix and the time the ingest started
//! reading plus `FAULTY_MAX_FUTURE_MS` (a fix appended before reading started, and so never
//! read, has an earlier `ts`, or it was faulty), and moves up as the oldest fix is evicted
//! (at most `points_per_device` are kept). A device new to the map starts likewise from the
//! map's time (its fixes as an orphan were read and not kept); a fix dropped as in the
//! future moves its device's start past it (the durable path judges that rule later, and
//! may store it). Everything else (devices not seen since the start, windows reaching
//! further back) is left to Postgres: the store names those devices, and the shell reads
//! them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::device_map::DeviceMap;
use super::history::{thin_indices, HistoryQuery};
use super::ingest::FanoutBatch;
use super::ordering::Fix;
use crate::wire::WirePosition;
use crate::UnixMillis;

/// An input of the [`TrackStore`].
#[derive(Debug, Clone, Copy)]
pub enum TrackInput<'a> {
    /// The ingest starts reading new stream entries now: at the instance's start, and again
    /// after a failed read (entries in between may never be read). Memory starts over.
    Reading,
    /// What the ingest read: its `seen` fixes are recorded.
    Batch(&'a FanoutBatch),
    /// The device map in use: devices no longer in it are forgotten.
    DeviceMap(&'a Arc<DeviceMap>),
}

/// The answer of [`TrackStore::answer`]: rows for the devices memory could answer, read as
/// Postgres would read them, and the devices Postgres must answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeldRows {
    /// Copied out under the shell's lock; made wire rows (a string each) after it.
    fixes: Vec<(Arc<str>, Fix)>,
    pub unknown: Vec<String>,
}

impl HeldRows {
    /// The rows memory answered, as the statements would have returned them.
    pub fn into_rows(self) -> Vec<WirePosition> {
        self.fixes
            .into_iter()
            .map(|(device, fix)| fix.to_wire(&device))
            .collect()
    }
}

#[derive(Debug)]
struct Track {
    /// Increasing `ts`, one fix per `ts` (the first recorded wins, as in Postgres).
    fixes: VecDeque<Fix>,
    /// Every recorded fix of the device with `ts >= complete_from` is in `fixes`.
    complete_from: i64,
}

/// Each device's recent fixes, bounded by the device map times `points_per_device`.
#[derive(Debug)]
pub struct TrackStore {
    points_per_device: usize,
    max_future_ms: u64,
    /// No fix before this can be known complete: reading started at this time minus
    /// `max_future_ms` (`i64::MAX` before it starts).
    started_at: i64,
    /// The device map last applied (an older one is a late refresh).
    map: Arc<DeviceMap>,
    devices: BTreeMap<Arc<str>, Track>,
    /// Fixes held over all devices.
    points: usize,
}

impl TrackStore {
    /// The store `config` asks for.
    pub fn new_for(config: &super::LiveConfig) -> TrackStore {
        TrackStore::new(config.trail_memory_points, config.faulty.max_future_ms)
    }

    /// A store keeping up to `points_per_device` fixes per device (0 keeps none: every
    /// query goes to Postgres), with the faulty rules' `max_future_ms`. It records nothing
    /// before [`TrackInput::Reading`].
    pub fn new(points_per_device: usize, max_future_ms: u64) -> TrackStore {
        TrackStore {
            points_per_device,
            max_future_ms,
            started_at: i64::MAX,
            map: Arc::new(DeviceMap::default()),
            devices: BTreeMap::new(),
            points: 0,
        }
    }

    /// `now` is wall time, the clock the faulty rules judged the fixes by.
    pub fn handle(&mut self, now: UnixMillis, input: TrackInput<'_>) {
        match input {
            TrackInput::Reading => {
                self.devices.clear();
                self.points = 0;
                self.started_at = self.future_bound(now);
            }
            TrackInput::Batch(batch) => {
                if self.points_per_device == 0 {
                    return;
                }
                for (device, ts) in &batch.future {
                    self.unsure(device, ts.as_i64());
                }
                for (device, fix) in &batch.seen {
                    self.record(device, *fix);
                }
            }
            TrackInput::DeviceMap(map) => {
                if !map.supersedes(&self.map) {
                    return;
                }
                let points = &mut self.points;
                self.devices.retain(|device, track| {
                    let keep = map.events_of(device).is_some();
                    if !keep {
                        *points -= track.fixes.len();
                    }
                    keep
                });
                // A device new to the map was an orphan until now: its fixes were read and
                // not kept, yet stored. Memory knows it only from what arrives next, and a
                // fix read before now is not newer than now plus the future bound.
                let joined_from = self.future_bound(now);
                for device in map.devices() {
                    if self.map.events_of(device).is_none() && !self.devices.contains_key(device) {
                        self.devices.insert(
                            Arc::from(device),
                            Track {
                                fixes: VecDeque::new(),
                                complete_from: joined_from,
                            },
                        );
                    }
                }
                self.map = Arc::clone(map);
            }
        }
    }

    /// Fixes held, over all devices (for the gauge and the tests).
    pub fn len(&self) -> usize {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn future_bound(&self, now: UnixMillis) -> i64 {
        now.as_i64()
            .saturating_add(i64::try_from(self.max_future_ms).unwrap_or(i64::MAX))
    }

    /// A fix of `device` at `ts` was dropped as in the future, and the durable path, which
    /// judges that rule later, may store it: memory cannot answer for the device up to it.
    fn unsure(&mut self, device: &Arc<str>, ts: i64) {
        if self.started_at == i64::MAX {
            return;
        }
        let from = ts.saturating_add(1);
        let track = match self.devices.get_mut(device) {
            Some(track) => track,
            None => self.devices.entry(Arc::clone(device)).or_insert(Track {
                fixes: VecDeque::new(),
                complete_from: from,
            }),
        };
        track.complete_from = track.complete_from.max(from);
        while track
            .fixes
            .front()
            .is_some_and(|f| f.ts.as_i64() < track.complete_from)
        {
            track.fixes.pop_front();
            self.points -= 1;
        }
    }

    fn record(&mut self, device: &Arc<str>, fix: Fix) {
        let ts = fix.ts.as_i64();
        if self.started_at == i64::MAX {
            return;
        }
        let track = match self.devices.get_mut(device) {
            Some(track) => track,
            None => self.devices.entry(Arc::clone(device)).or_insert(Track {
                fixes: VecDeque::new(),
                complete_from: ts.max(self.started_at),
            }),
        };
        if ts < track.complete_from {
            return;
        }
        match track.fixes.back() {
            Some(last) if last.ts.as_i64() >= ts => {
                // Late (buffered records arrive out of order): into its place, unless a
                // fix of that time is already held.
                let at = track.fixes.partition_point(|f| f.ts.as_i64() < ts);
                if track.fixes.get(at).is_some_and(|f| f.ts.as_i64() == ts) {
                    return;
                }
                track.fixes.insert(at, fix);
            }
            _ => track.fixes.push_back(fix),
        }
        self.points += 1;
        if track.fixes.len() > self.points_per_device {
            if let Some(evicted) = track.fixes.pop_front() {
                self.points -= 1;
                track.complete_from = track
                    .complete_from
                    .max(evicted.ts.as_i64().saturating_add(1));
            }
        }
    }

    /// What Postgres would return for `query` and each of `devices` (the newest fix, then
    /// the history asked for), for the devices whose memory is complete enough; the others
    /// in `unknown`, in the order given.
    pub fn answer(&self, devices: &[String], query: HistoryQuery) -> HeldRows {
        let mut held = HeldRows::default();
        let mut since_rows = 0usize;
        for device in devices {
            let Some((key, track)) = self.devices.get_key_value(device.as_str()) else {
                held.unknown.push(device.clone());
                continue;
            };
            let Some(newest) = track.fixes.back() else {
                held.unknown.push(device.clone());
                continue;
            };
            let newest_ts = newest.ts.as_i64();
            match query {
                HistoryQuery::Latest => held.fixes.push((Arc::clone(key), *newest)),
                HistoryQuery::Trail {
                    window_ms,
                    max_rows_per_device,
                } => {
                    let start =
                        newest_ts.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
                    if start < track.complete_from {
                        held.unknown.push(device.clone());
                        continue;
                    }
                    held.fixes.push((Arc::clone(key), *newest));
                    let first = track.fixes.partition_point(|f| f.ts.as_i64() < start);
                    let end = track.fixes.len() - 1;
                    let n = end.saturating_sub(first);
                    held.fixes.extend(
                        thin_indices(n, max_rows_per_device)
                            .map(|i| (Arc::clone(key), track.fixes[first + i])),
                    );
                }
                HistoryQuery::Since { since, max_rows } => {
                    let after = since.as_i64().saturating_add(1);
                    if after < track.complete_from {
                        held.unknown.push(device.clone());
                        continue;
                    }
                    held.fixes.push((Arc::clone(key), *newest));
                    // Like the paged read: one row past `max_rows` tells the hub there are
                    // too many, and nothing more is needed.
                    if since_rows > max_rows {
                        continue;
                    }
                    let first = track.fixes.partition_point(|f| f.ts.as_i64() < after);
                    for fix in track.fixes.range(first..) {
                        held.fixes.push((Arc::clone(key), *fix));
                        since_rows += 1;
                        if since_rows > max_rows {
                            break;
                        }
                    }
                }
            }
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::live::history::thin;

    const MAX_FUTURE: u64 = 1_000;
    const START: i64 = 1_000_000;

    fn fix(ts: i64) -> Fix {
        Fix {
            ts: UnixMillis(ts),
            lat: 45.0 + ts as f64 * 1e-6,
            lon: 7.0,
            speed: 1.0,
            course: 2.0,
        }
    }

    fn batch(fixes: &[(&str, i64)]) -> FanoutBatch {
        FanoutBatch {
            positions: Vec::new(),
            seen: fixes
                .iter()
                .map(|(d, ts)| (Arc::from(*d), fix(*ts)))
                .collect(),
            future: Vec::new(),
        }
    }

    fn reading(points: usize) -> TrackStore {
        let mut store = TrackStore::new(points, MAX_FUTURE);
        store.handle(UnixMillis(START), TrackInput::Reading);
        store
    }

    fn devices(names: &[&str]) -> Vec<String> {
        names.iter().map(|d| d.to_string()).collect()
    }

    fn map(version: u64, names: &[&str]) -> Arc<DeviceMap> {
        let event = Uuid::from_u128(1);
        Arc::new(DeviceMap::new(
            version,
            names
                .iter()
                .map(|d| (d.to_string(), BTreeSet::from([event])))
                .collect(),
        ))
    }

    fn ts_of(rows: &[WirePosition]) -> Vec<i64> {
        rows.iter().map(|r| r.ts).collect()
    }

    const T0: i64 = START + MAX_FUTURE as i64;

    #[test]
    fn records_nothing_before_reading_starts() {
        let mut store = TrackStore::new(10, MAX_FUTURE);
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0 + 5)])),
        );
        assert!(store.is_empty());
        let held = store.answer(&devices(&["a"]), HistoryQuery::Latest);
        assert_eq!(held.unknown, devices(&["a"]));
    }

    #[test]
    fn fixes_before_reading_plus_max_future_are_left_to_postgres() {
        let mut store = reading(10);
        // Appended before reading started, a fix can be this new: not known complete.
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0 - 1)])),
        );
        assert!(store.is_empty());
        let held = store.answer(&devices(&["a"]), HistoryQuery::Latest);
        assert_eq!(held.unknown, devices(&["a"]));
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&[("a", T0)])));
        let held = store.answer(&devices(&["a"]), HistoryQuery::Latest);
        assert!(held.unknown.is_empty());
        assert_eq!(ts_of(&held.clone().into_rows()), vec![T0]);
    }

    #[test]
    fn a_trail_is_the_newest_then_the_thinned_window_like_the_statement() {
        let mut store = reading(1_000);
        let fixes: Vec<(&str, i64)> = (0..300).map(|i| ("a", T0 + i * 1_000)).collect();
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&fixes)));
        let held = store.answer(
            &devices(&["a"]),
            HistoryQuery::Trail {
                window_ms: 100_000,
                max_rows_per_device: 10,
            },
        );
        assert!(held.unknown.is_empty());
        let newest = T0 + 299_000;
        // The window is [newest - 100 s, newest): 100 fixes, thinned to 10.
        let window: Vec<i64> = (199..299).map(|i| T0 + i * 1_000).collect();
        let mut expected = vec![newest];
        expected.extend(thin(&window, 10));
        assert_eq!(ts_of(&held.clone().into_rows()), expected);
    }

    #[test]
    fn a_window_reaching_before_what_memory_holds_goes_to_postgres() {
        let mut store = reading(1_000);
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0 + 10_000), ("a", T0 + 20_000)])),
        );
        let query = |window_ms| HistoryQuery::Trail {
            window_ms,
            max_rows_per_device: 10,
        };
        assert_eq!(
            store.answer(&devices(&["a"]), query(20_000)).unknown,
            devices(&["a"])
        );
        let held = store.answer(&devices(&["a"]), query(10_000));
        assert!(held.unknown.is_empty());
        assert_eq!(
            ts_of(&held.clone().into_rows()),
            vec![T0 + 20_000, T0 + 10_000]
        );
    }

    #[test]
    fn eviction_moves_what_memory_answers_for() {
        let mut store = reading(3);
        let fixes: Vec<(&str, i64)> = (0..5).map(|i| ("a", T0 + i)).collect();
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&fixes)));
        assert_eq!(store.len(), 3);
        let since = |s| HistoryQuery::Since {
            since: UnixMillis(s),
            max_rows: 100,
        };
        // Held: T0+2..T0+4, complete from T0+2.
        assert_eq!(store.answer(&devices(&["a"]), since(T0)).unknown.len(), 1);
        let held = store.answer(&devices(&["a"]), since(T0 + 1));
        assert!(held.unknown.is_empty());
        assert_eq!(
            ts_of(&held.clone().into_rows()),
            vec![T0 + 4, T0 + 2, T0 + 3, T0 + 4]
        );
        // A late fix from before what memory is complete for is not taken.
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&[("a", T0)])));
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn late_fixes_go_into_place_and_the_first_of_a_time_wins() {
        let mut store = reading(10);
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0 + 1), ("a", T0 + 5), ("a", T0 + 3)])),
        );
        let mut dup = batch(&[("a", T0 + 3)]);
        dup.seen[0].1.lat = 0.5;
        store.handle(UnixMillis(START), TrackInput::Batch(&dup));
        let held = store.answer(
            &devices(&["a"]),
            HistoryQuery::Since {
                since: UnixMillis(T0),
                max_rows: 100,
            },
        );
        assert_eq!(
            ts_of(&held.clone().into_rows()),
            vec![T0 + 5, T0 + 1, T0 + 3, T0 + 5]
        );
        assert_ne!(held.clone().into_rows()[2].lat, 0.5);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn a_resume_stops_one_row_past_its_bound_but_names_every_newest() {
        let mut store = reading(100);
        let mut fixes = Vec::new();
        for i in 1..=5 {
            fixes.push(("a", T0 + i));
            fixes.push(("b", T0 + i));
        }
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&fixes)));
        let held = store.answer(
            &devices(&["a", "b"]),
            HistoryQuery::Since {
                since: UnixMillis(T0),
                max_rows: 3,
            },
        );
        let a = held
            .clone()
            .into_rows()
            .iter()
            .filter(|r| r.device_id == "a")
            .count();
        let b = held
            .clone()
            .into_rows()
            .iter()
            .filter(|r| r.device_id == "b")
            .count();
        assert_eq!((a, b), (5, 1));
    }

    #[test]
    fn devices_leave_with_the_map_and_a_late_map_is_ignored() {
        let mut store = reading(10);
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0), ("a", T0 + 1), ("b", T0)])),
        );
        assert_eq!(store.len(), 3);
        // b leaves with its one fix; a keeps its two.
        store.handle(UnixMillis(START), TrackInput::DeviceMap(&map(2, &["a"])));
        assert_eq!(store.len(), 2);
        store.handle(UnixMillis(START), TrackInput::DeviceMap(&map(1, &[])));
        assert_eq!(store.len(), 2);
        let held = store.answer(&devices(&["a", "b"]), HistoryQuery::Latest);
        assert_eq!(held.unknown, devices(&["b"]));
    }

    #[test]
    fn a_device_new_to_the_map_is_known_only_from_now_plus_the_future_bound() {
        let mut store = reading(10);
        store.handle(UnixMillis(START), TrackInput::DeviceMap(&map(1, &["a"])));
        // While "b" was an orphan, a fix at T0 + 100 was read and not kept; then it joins,
        // and a late fix from before arrives first.
        let joined = T0 + 200;
        store.handle(
            UnixMillis(joined - MAX_FUTURE as i64),
            TrackInput::DeviceMap(&map(2, &["a", "b"])),
        );
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("b", T0 + 90)])),
        );
        let held = store.answer(&devices(&["b"]), HistoryQuery::Latest);
        assert_eq!(held.unknown, devices(&["b"]), "Postgres has T0 + 100");
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("b", joined)])),
        );
        let held = store.answer(&devices(&["b"]), HistoryQuery::Latest);
        assert_eq!(ts_of(&held.clone().into_rows()), vec![joined]);
    }

    #[test]
    fn a_fix_dropped_as_in_the_future_makes_memory_unsure_up_to_it() {
        let mut store = reading(10);
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0), ("a", T0 + 1)])),
        );
        let mut future = batch(&[]);
        future.future.push((Arc::from("a"), UnixMillis(T0 + 50)));
        store.handle(UnixMillis(START), TrackInput::Batch(&future));
        assert!(store.is_empty());
        let held = store.answer(&devices(&["a"]), HistoryQuery::Latest);
        assert_eq!(
            held.unknown,
            devices(&["a"]),
            "the durable path may store T0 + 50"
        );
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0 + 40), ("a", T0 + 60)])),
        );
        let held = store.answer(&devices(&["a"]), HistoryQuery::Latest);
        assert_eq!(ts_of(&held.clone().into_rows()), vec![T0 + 60]);
    }

    #[test]
    fn reading_again_starts_memory_over() {
        let mut store = reading(10);
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&[("a", T0)])));
        store.handle(UnixMillis(START + 10), TrackInput::Reading);
        assert!(store.is_empty());
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0 + 5)])),
        );
        assert!(
            store.is_empty(),
            "before the new start plus the future bound"
        );
    }

    #[test]
    fn zero_points_keeps_nothing() {
        let mut store = reading(0);
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&[("a", T0)])));
        assert!(store.is_empty());
        assert_eq!(
            store.answer(&devices(&["a"]), HistoryQuery::Latest).unknown,
            devices(&["a"])
        );
    }

    /// What Postgres holds of `fixes` (first of a time wins) read as the trail statement
    /// and the resume pages read it.
    fn reference(fixes: &[i64], query: HistoryQuery) -> Vec<i64> {
        let mut stored = BTreeMap::new();
        for &ts in fixes {
            stored.entry(ts).or_insert(ts);
        }
        let all: Vec<i64> = stored.into_keys().collect();
        let Some(&newest) = all.last() else {
            return Vec::new();
        };
        let mut out = vec![newest];
        match query {
            HistoryQuery::Latest => {}
            HistoryQuery::Trail {
                window_ms,
                max_rows_per_device,
            } => {
                let start = newest - window_ms as i64;
                let window: Vec<i64> = all
                    .iter()
                    .copied()
                    .filter(|&t| t >= start && t < newest)
                    .collect();
                out.extend(thin(&window, max_rows_per_device));
            }
            HistoryQuery::Since { since, .. } => {
                out.extend(all.iter().copied().filter(|&t| t > since.as_i64()));
            }
        }
        out
    }

    proptest! {
        /// Whatever order fixes arrive in and however many are evicted, what memory
        /// answers is what Postgres would answer for the same fixes.
        #[test]
        fn memory_answers_what_postgres_would(
            offsets in prop::collection::vec(0i64..200, 1..120),
            points in 1usize..60,
            window_ms in 0u64..150,
            max_rows in 1usize..20,
            since in 0i64..200,
        ) {
            let mut store = reading(points);
            let fixes: Vec<i64> = offsets.iter().map(|o| T0 + o).collect();
            for &ts in &fixes {
                store.handle(UnixMillis(START), TrackInput::Batch(&batch(&[("a", ts)])));
            }
            prop_assert!(store.len() <= points);
            for query in [
                HistoryQuery::Latest,
                HistoryQuery::Trail { window_ms, max_rows_per_device: max_rows },
                HistoryQuery::Since { since: UnixMillis(T0 + since), max_rows: 1_000 },
            ] {
                let held = store.answer(&devices(&["a"]), query);
                if held.unknown.is_empty() {
                    prop_assert_eq!(ts_of(&held.clone().into_rows()), reference(&fixes, query), "{:?}", query);
                }
            }
            // Memory always answers the newest, and a trail as long as it holds.
            prop_assert!(store.answer(&devices(&["a"]), HistoryQuery::Latest).unknown.is_empty());
        }
    }

    #[test]
    fn a_resume_at_exactly_its_bound_still_reads_one_row_of_the_next_device() {
        let mut store = reading(100);
        let mut fixes: Vec<(&str, i64)> = (1..=3).map(|i| ("a", T0 + i)).collect();
        fixes.extend((1..=5).map(|i| ("b", T0 + i)));
        store.handle(UnixMillis(START), TrackInput::Batch(&batch(&fixes)));
        assert!(!store.is_empty());
        let held = store.answer(
            &devices(&["a", "b"]),
            HistoryQuery::Since {
                since: UnixMillis(T0),
                max_rows: 3,
            },
        );
        let rows = held.into_rows();
        let count = |d: &str| rows.iter().filter(|r| r.device_id == d).count();
        // a: its 3 rows and its newest; b: its newest and the one row past the bound.
        assert_eq!((count("a"), count("b")), (4, 2));
    }

    #[test]
    fn a_future_fix_leaves_memory_sure_of_what_comes_after_it() {
        let mut store = reading(10);
        store.handle(
            UnixMillis(START),
            TrackInput::Batch(&batch(&[("a", T0), ("a", T0 + 51)])),
        );
        let mut future = batch(&[]);
        future.future.push((Arc::from("a"), UnixMillis(T0 + 50)));
        store.handle(UnixMillis(START), TrackInput::Batch(&future));
        assert_eq!(store.len(), 1, "T0 + 51 stays");
    }
}
