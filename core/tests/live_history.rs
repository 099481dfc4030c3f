//! Trails and resume in snapshots (contract section 5.1), through the live hub's inputs and
//! commands, and the thinning's properties.

#[path = "common/clocks.rs"]
mod clocks;

use clocks::clocks;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::faulty::FaultyThresholds;
use processor_core::live::{
    self, thin, Command, ConnId, DeviceMap, HistoryQuery, Ingest, IngestInput, Input, LiveConfig,
    LiveHub, Principal, RequestId, Visibility,
};
use processor_core::stream::EntryId;
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

const T0: i64 = 1_764_324_000_000;
const EVENT: &str = "11111111-1111-4111-8111-111111111111";
const LAT: f64 = 54.68;
const LON: f64 = 25.28;
/// About 11 m of latitude: a walking pace between fixes a second apart.
const STEP: f64 = 0.0001;

fn config() -> LiveConfig {
    LiveConfig {
        max_messages_per_s: 1_000_000,
        visibility_recheck_ms: 1 << 40,
        faulty: FaultyThresholds {
            min_satellites: 3,
            max_future_ms: 60_000,
            min_timestamp: UnixMillis(i64::MIN),
        },
        trail_max_s: 3_600,
        trail_max_points: 5,
        resume_max_positions: 8,
        ..LiveConfig::default()
    }
}

struct Harness {
    hub: LiveHub,
    ingest: Ingest,
    now: i64,
    next_entry: u64,
}

impl Harness {
    fn new() -> Harness {
        let config = config();
        let now = T0 + 3_600_000;
        let mut h = Harness {
            hub: LiveHub::new(config.clone(), clocks(UnixMillis(now))),
            ingest: Ingest::new(&config),
            now,
            next_entry: 0,
        };
        let event = Uuid::parse_str(EVENT).unwrap();
        let by_device: BTreeMap<String, BTreeSet<Uuid>> = ["A", "B"]
            .iter()
            .map(|d| (d.to_string(), BTreeSet::from([event])))
            .collect();
        let map = Arc::new(DeviceMap::new(1, by_device));
        h.ingest
            .handle(UnixMillis(now), IngestInput::DeviceMap(Arc::clone(&map)));
        h.hub.handle(clocks(UnixMillis(now)), Input::DeviceMap(map));
        h.hub.handle(
            clocks(UnixMillis(now)),
            Input::Connected {
                conn: ConnId(1),
                principal: Principal::Anonymous,
                expires_at: None,
            },
        );
        h.drain();
        h
    }

    fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.hub.poll_command()).collect()
    }

    /// The JSON text messages sent, in order.
    fn sent(commands: &[Command]) -> Vec<Value> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Send { frame, .. } => serde_json::from_slice(frame.payload()).ok(),
                _ => None,
            })
            .collect()
    }

    /// Subscribes with `extra` fields, grants it; returns the load request and its query.
    fn subscribe(&mut self, extra: Value) -> (RequestId, HistoryQuery, Vec<String>) {
        let mut msg = json!({"type": "subscribe", "topic": format!("event:{EVENT}")});
        for (k, v) in extra.as_object().unwrap() {
            msg[k] = v.clone();
        }
        self.hub.handle(
            clocks(UnixMillis(self.now)),
            live::text(ConnId(1), Bytes::from(msg.to_string())),
        );
        let authorize = self.drain();
        let [Command::Authorize { request, .. }] = authorize[..] else {
            panic!("expected Authorize, got {authorize:?}");
        };
        self.hub.handle(
            clocks(UnixMillis(self.now)),
            Input::Visibility {
                request,
                visibility: Ok(Visibility::Public),
            },
        );
        let commands = self.drain();
        let (load, query, devices) = commands
            .iter()
            .find_map(|c| match c {
                Command::LoadSnapshot {
                    request,
                    history,
                    devices,
                    ..
                } => Some((*request, *history, devices.clone())),
                _ => None,
            })
            .expect("a LoadSnapshot");
        (load, query, devices)
    }

    fn answer(&mut self, request: RequestId, rows: Vec<WirePosition>) -> Vec<Value> {
        self.hub.handle(
            clocks(UnixMillis(self.now)),
            Input::Snapshot {
                request,
                rows: Ok(rows),
            },
        );
        let commands = self.drain();
        Self::sent(&commands)
    }

    /// Positions read from the stream: judged by the ingest, handed to the hub.
    fn live(&mut self, fixes: &[(&str, i64, f64)]) -> Vec<Value> {
        let entries = fixes
            .iter()
            .map(|(device, ts, lat)| {
                self.next_entry += 1;
                let payload = json!({
                    "device_id": device, "timestamp": T0 + ts, "latitude": lat,
                    "longitude": LON, "satellites": 8,
                });
                (
                    EntryId::new(self.next_entry, 0),
                    Some(Bytes::from(payload.to_string())),
                )
            })
            .collect();
        self.ingest
            .handle(UnixMillis(self.now), IngestInput::Entries(entries));
        let mut sent = Vec::new();
        while let Some(batch) = self.ingest.poll_batch() {
            self.hub
                .handle(clocks(UnixMillis(self.now)), Input::Batch(batch));
            sent.extend(Self::sent(&self.drain()));
        }
        sent
    }
}

fn row(device: &str, ts: i64, lat: f64) -> WirePosition {
    WirePosition {
        device_id: device.into(),
        lat,
        lon: LON,
        ts: T0 + ts,
        speed: 0.0,
        course: 0.0,
    }
}

/// A device walking north, a fix a second: `n` rows ending at second `last`.
fn walk(device: &str, last: i64, n: i64) -> Vec<WirePosition> {
    (last - n + 1..=last)
        .map(|s| row(device, s * 1_000, LAT + s as f64 * STEP))
        .collect()
}

fn trail_ts(position: &Value) -> Vec<i64> {
    position["trail"]
        .as_array()
        .expect("a trail")
        .iter()
        .map(|p| p[0].as_i64().unwrap() - T0)
        .collect()
}

fn by_device<'a>(snapshot: &'a Value, device: &str) -> Vec<&'a Value> {
    snapshot["positions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["deviceId"] == device)
        .collect()
}

#[test]
fn a_plain_subscribe_reads_no_history_and_carries_no_trail() {
    let mut h = Harness::new();
    let (load, query, _) = h.subscribe(json!({}));
    assert_eq!(query, HistoryQuery::Latest);
    let sent = h.answer(load, walk("A", 10, 1));
    assert_eq!(sent[0]["type"], "snapshot");
    assert!(sent[0]["positions"][0].get("trail").is_none());
    assert!(sent[0].get("truncated").is_none());
}

#[test]
fn a_trail_is_the_window_before_the_head_oldest_first_thinned_evenly() {
    let mut h = Harness::new();
    let (load, query, _) = h.subscribe(json!({"trail_s": 10}));
    assert_eq!(
        query,
        HistoryQuery::Trail {
            window_ms: 10_000,
            max_rows_per_device: 5
        }
    );
    // A: seconds 1..=30; the window before 30 s is 20..=29 s (10 points), thinned to 5
    // evenly from the oldest. B: only its head.
    let mut rows = walk("A", 30, 30);
    rows.push(row("B", 5_000, LAT));
    let sent = h.answer(load, rows);
    let snapshot = &sent[0];
    let a = by_device(snapshot, "A");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["ts"].as_i64().unwrap() - T0, 30_000);
    assert_eq!(trail_ts(a[0]), vec![20_000, 22_000, 24_000, 26_000, 28_000]);
    let b = by_device(snapshot, "B");
    assert_eq!(trail_ts(b[0]), Vec::<i64>::new());
}

#[test]
fn a_trail_passes_the_jump_rule() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"trail_s": 60}));
    let mut rows = walk("A", 4, 4);
    // A glitch 1 degree away (about 111 km in a second) between two good fixes.
    rows.push(row("A", 5_000, LAT + 1.0));
    rows.push(row("A", 6_000, LAT + 6.0 * STEP));
    let sent = h.answer(load, rows);
    let a = by_device(&sent[0], "A");
    assert_eq!(trail_ts(a[0]), vec![1_000, 2_000, 3_000, 4_000]);
}

#[test]
fn a_trail_joins_what_the_live_path_accepted_and_postgres_did_not_have_yet() {
    let mut h = Harness::new();
    // Accepted live before the subscribe; Postgres returns only the first two.
    h.live(&[
        ("A", 1_000, LAT + STEP),
        ("A", 2_000, LAT + 2.0 * STEP),
        ("A", 3_000, LAT + 3.0 * STEP),
        ("A", 4_000, LAT + 4.0 * STEP),
    ]);
    let (load, _, _) = h.subscribe(json!({"trail_s": 60}));
    let sent = h.answer(load, walk("A", 2, 2));
    let a = by_device(&sent[0], "A");
    assert_eq!(a[0]["ts"].as_i64().unwrap() - T0, 4_000);
    assert_eq!(trail_ts(a[0]), vec![1_000, 2_000, 3_000]);
}

#[test]
fn trail_s_over_the_maximum_or_not_a_count_is_a_bad_request_naming_the_field() {
    let mut h = Harness::new();
    for (value, field) in [
        (json!(3_601), "trail_s"),
        (json!(-1), "trail_s"),
        (json!(1.5), "trail_s"),
        (json!("60"), "trail_s"),
    ] {
        let msg = json!({"type": "subscribe", "topic": format!("event:{EVENT}"), field: value});
        h.hub.handle(
            clocks(UnixMillis(h.now)),
            live::text(ConnId(1), Bytes::from(msg.to_string())),
        );
        let sent = Harness::sent(&h.drain());
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["code"], "bad_request");
        assert_eq!(sent[0]["topic"], format!("event:{EVENT}"));
        assert!(
            sent[0]["message"].as_str().unwrap().contains("`trail_s`"),
            "{sent:?}"
        );
    }
    for value in [json!(-5), json!("x"), json!(1.5)] {
        let msg = json!({"type": "subscribe", "topic": format!("event:{EVENT}"), "since": value});
        h.hub.handle(
            clocks(UnixMillis(h.now)),
            live::text(ConnId(1), Bytes::from(msg.to_string())),
        );
        let sent = Harness::sent(&h.drain());
        assert_eq!(sent[0]["code"], "bad_request");
        assert!(sent[0]["message"].as_str().unwrap().contains("`since`"));
    }
}

#[test]
fn a_resume_sends_every_position_after_since_then_live_without_gap_or_repeat() {
    let mut h = Harness::new();
    let (load, query, _) = h.subscribe(json!({"since": T0 + 2_000}));
    assert_eq!(
        query,
        HistoryQuery::Since {
            since: UnixMillis(T0 + 2_000),
            max_rows: 8
        }
    );
    // While the snapshot loads, A's 4 s and 5 s arrive live (4 s is also stored by then).
    let held = h.live(&[
        ("A", 4_000, LAT + 4.0 * STEP),
        ("A", 5_000, LAT + 5.0 * STEP),
    ]);
    assert!(held.is_empty(), "{held:?}");
    let mut rows = walk("A", 4, 4);
    rows.push(row("B", 1_000, LAT));
    let sent = h.answer(load, rows);
    let snapshot = &sent[0];
    assert!(snapshot.get("truncated").is_none());
    let a: Vec<i64> = by_device(snapshot, "A")
        .iter()
        .map(|p| p["ts"].as_i64().unwrap() - T0)
        .collect();
    // 5 s was accepted live and is in the live path's recent track: it is in the snapshot,
    // and the held message of it is not sent again.
    assert_eq!(a, vec![3_000, 4_000, 5_000]);
    assert!(
        by_device(snapshot, "B").is_empty(),
        "B has nothing after since"
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    let next = h.live(&[("A", 6_000, LAT + 6.0 * STEP), ("B", 7_000, LAT)]);
    let ts: Vec<i64> = next
        .iter()
        .map(|p| p["ts"].as_i64().unwrap() - T0)
        .collect();
    assert_eq!(ts, vec![6_000, 7_000]);
}

#[test]
fn positions_held_during_a_resume_are_all_sent_in_order() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    // Three fixes arrive while loading; the recent track has them too, so the snapshot
    // carries them and nothing of them repeats.
    h.live(&[
        ("A", 1_000, LAT + STEP),
        ("A", 2_000, LAT + 2.0 * STEP),
        ("A", 3_000, LAT + 3.0 * STEP),
    ]);
    let sent = h.answer(load, vec![]);
    let a: Vec<i64> = by_device(&sent[0], "A")
        .iter()
        .map(|p| p["ts"].as_i64().unwrap() - T0)
        .collect();
    assert_eq!(a, vec![1_000, 2_000, 3_000]);
    assert_eq!(sent.len(), 1);
}

#[test]
fn a_resume_over_the_maximum_is_the_newest_per_device_and_truncated() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    let mut rows = walk("A", 6, 6);
    rows.extend(walk("B", 3, 3));
    let sent = h.answer(load, rows);
    let snapshot = &sent[0];
    assert_eq!(snapshot["truncated"], true);
    let ts: Vec<(String, i64)> = snapshot["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["deviceId"].as_str().unwrap().to_owned(),
                p["ts"].as_i64().unwrap() - T0,
            )
        })
        .collect();
    assert_eq!(ts, vec![("A".into(), 6_000), ("B".into(), 3_000)]);
}

#[test]
fn a_resume_at_the_maximum_is_complete() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    let mut rows = walk("A", 5, 5);
    rows.extend(walk("B", 3, 3));
    let sent = h.answer(load, rows);
    assert!(sent[0].get("truncated").is_none());
    assert_eq!(sent[0]["positions"].as_array().unwrap().len(), 8);
}

#[test]
fn a_row_at_since_itself_does_not_count_toward_the_maximum() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    // 8 rows after since, the maximum, and one at since: the resume is complete.
    let mut rows = vec![row("A", 0, LAT)];
    rows.extend(walk("A", 5, 5));
    rows.extend(walk("B", 3, 3));
    let sent = h.answer(load, rows);
    assert!(sent[0].get("truncated").is_none(), "{}", sent[0]);
}

#[test]
fn a_resume_whose_read_was_cut_is_truncated_even_if_the_rules_leave_fewer() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    // 9 rows after since: the read stopped one past the maximum (8), so more may follow
    // in the table. Two are glitches the jump rule drops: 7 would pass, but the resume
    // cannot be complete.
    let mut rows = walk("A", 7, 7);
    rows.push(row("A", 8_000, LAT + 1.0));
    rows.push(row("A", 9_000, LAT + 1.0));
    let sent = h.answer(load, rows);
    assert_eq!(sent[0]["truncated"], true, "{}", sent[0]);
    assert_eq!(by_device(&sent[0], "A").len(), 1, "the newest per device");
}

#[test]
fn a_resume_passes_the_jump_rule() {
    let mut h = Harness::new();
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    let mut rows = walk("A", 2, 2);
    rows.push(row("A", 3_000, LAT + 1.0));
    rows.push(row("A", 4_000, LAT + 4.0 * STEP));
    let sent = h.answer(load, rows);
    let a: Vec<i64> = by_device(&sent[0], "A")
        .iter()
        .map(|p| p["ts"].as_i64().unwrap() - T0)
        .collect();
    assert_eq!(a, vec![1_000, 2_000, 4_000]);
}

proptest! {
    #[test]
    fn thinning_keeps_the_oldest_never_exceeds_the_max_and_keeps_order(
        n in 0usize..500,
        max in 1usize..120,
    ) {
        let points: Vec<usize> = (0..n).collect();
        let thinned = thin(&points, max);
        prop_assert!(thinned.len() <= max);
        prop_assert_eq!(thinned.len(), n.min(max));
        if n > 0 {
            prop_assert_eq!(thinned[0], 0);
        }
        prop_assert!(thinned.windows(2).all(|w| w[0] < w[1]));
        // Evenly: no two kept neighbours are further apart than the even step rounded up.
        let step = n.div_ceil(max.max(1));
        prop_assert!(thinned.windows(2).all(|w| w[1] - w[0] <= step));
    }
}

#[test]
fn a_resume_has_recent_fixes_postgres_stored_out_of_order() {
    let mut h = Harness::new();
    h.live(&[
        ("A", 1_000, LAT + STEP),
        ("A", 2_000, LAT + 2.0 * STEP),
        ("A", 3_000, LAT + 3.0 * STEP),
    ]);
    let (load, _, _) = h.subscribe(json!({"since": T0}));
    // Two inserts ran concurrently: 1 s and 3 s are stored, 2 s not yet.
    let sent = h.answer(
        load,
        vec![
            row("A", 1_000, LAT + STEP),
            row("A", 3_000, LAT + 3.0 * STEP),
        ],
    );
    let a: Vec<i64> = by_device(&sent[0], "A")
        .iter()
        .map(|p| p["ts"].as_i64().unwrap() - T0)
        .collect();
    assert_eq!(a, vec![1_000, 2_000, 3_000]);
}

#[test]
fn a_snapshot_larger_than_the_backpressure_threshold_is_sent_and_drains() {
    let mut h = Harness::new();
    let config = LiveConfig {
        conflate_threshold_bytes: 200,
        backpressure_threshold_bytes: 600,
        trail_max_points: 100,
        ..config()
    };
    h.hub = LiveHub::new(config, clocks(UnixMillis(h.now)));
    let event = Uuid::parse_str(EVENT).unwrap();
    let by_device: BTreeMap<String, BTreeSet<Uuid>> =
        BTreeMap::from([("A".to_owned(), BTreeSet::from([event]))]);
    h.hub.handle(
        clocks(UnixMillis(h.now)),
        Input::DeviceMap(Arc::new(DeviceMap::new(1, by_device))),
    );
    h.hub.handle(
        clocks(UnixMillis(h.now)),
        Input::Connected {
            conn: ConnId(1),
            principal: Principal::Anonymous,
            expires_at: None,
        },
    );
    h.drain();
    let (load, _, _) = h.subscribe(json!({"trail_s": 3_600}));
    h.hub.handle(
        clocks(UnixMillis(h.now)),
        Input::Snapshot {
            request: load,
            rows: Ok(walk("A", 100, 100)),
        },
    );
    let commands = h.drain();
    assert!(
        !commands.iter().any(|c| matches!(c, Command::Close { .. })),
        "a big snapshot does not close its connection"
    );
    let snapshot = &Harness::sent(&commands)[0];
    assert_eq!(trail_ts(&snapshot["positions"][0]).len(), 99);
    let size: u64 = commands
        .iter()
        .map(|c| match c {
            Command::Send { frame, .. } => frame.len() as u64,
            _ => 0,
        })
        .sum();
    assert!(size > 2_000, "{size} bytes");
    // A subscribe again while it is still queued: that snapshot counts, and is too much.
    let (load, _, _) = h.subscribe(json!({"trail_s": 3_600}));
    h.hub.handle(
        clocks(UnixMillis(h.now)),
        Input::Snapshot {
            request: load,
            rows: Ok(walk("A", 100, 100)),
        },
    );
    assert!(h
        .drain()
        .iter()
        .any(|c| matches!(c, Command::Close { code: 1013, .. })));
}
