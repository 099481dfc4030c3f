//! Paced replay (contract section 5.1) through the live hub's inputs and commands, in
//! simulated time: pace, pause, speed, seek, end, flow control and limits.

#[path = "common/clocks.rs"]
mod clocks;

use clocks::{clocks, wall_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::live::replay_budget::ReplayBudget;
use processor_core::live::{
    self, Command, ConnId, DeviceMap, HistoryQuery, Input, LiveConfig, LiveHub, Principal,
    ReplayKey, RequestId, Visibility,
};
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

const T0: i64 = 1_764_324_000_000;
const EVENT: &str = "11111111-1111-4111-8111-111111111111";
const PRIVATE: &str = "22222222-2222-4222-8222-222222222222";

fn config() -> LiveConfig {
    LiveConfig {
        max_messages_per_s: 1_000_000,
        visibility_recheck_ms: 1 << 40,
        ping_interval_ms: 1 << 40,
        write_timeout_ms: 1 << 40,
        conflate_threshold_bytes: 200,
        backpressure_threshold_bytes: 1 << 20,
        replay_read_ahead: 4,
        replay_max_per_connection: 2,
        replay_max_total: 3,
        ..LiveConfig::default()
    }
}

/// What the shell would do, by hand: the hub, the time, and the commands it gave.
struct Harness {
    hub: LiveHub,
    now: i64,
    /// Text messages sent, per connection, in order.
    sent: BTreeMap<u64, Vec<Value>>,
    /// Bytes sent and not yet reported written, per connection.
    unwritten: BTreeMap<u64, u64>,
    /// Connections whose socket takes nothing.
    stalled: BTreeSet<u64>,
    requests: Vec<Command>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config())
    }

    fn with(config: LiveConfig) -> Harness {
        Harness::of(LiveHub::new(config, clocks(UnixMillis(T0))))
    }

    /// A shard whose replay limit is `budget`, shared with others.
    fn sharing(budget: Arc<ReplayBudget>) -> Harness {
        Harness::of(LiveHub::sharing(config(), clocks(UnixMillis(T0)), budget))
    }

    fn of(hub: LiveHub) -> Harness {
        let mut h = Harness {
            hub,
            now: T0,
            sent: BTreeMap::new(),
            unwritten: BTreeMap::new(),
            stalled: BTreeSet::new(),
            requests: Vec::new(),
        };
        let by_device: BTreeMap<String, BTreeSet<Uuid>> =
            [("A", EVENT), ("B", EVENT), ("C", PRIVATE)]
                .iter()
                .map(|(d, e)| (d.to_string(), BTreeSet::from([Uuid::parse_str(e).unwrap()])))
                .collect();
        h.hub.handle(
            clocks(UnixMillis(T0)),
            Input::DeviceMap(Arc::new(DeviceMap::new(1, by_device))),
        );
        for conn in [1, 2] {
            h.input(Input::Connected {
                conn: ConnId(conn),
                principal: Principal::Anonymous,
                expires_at: None,
            });
        }
        h
    }

    fn input(&mut self, input: Input) {
        self.hub.handle(clocks(UnixMillis(self.now)), input);
        self.drain();
    }

    /// Takes the commands; sockets that are not stalled take everything at once.
    fn drain(&mut self) {
        loop {
            let mut written = Vec::new();
            while let Some(command) = self.hub.poll_command() {
                match command {
                    Command::Send { conn, frame } => {
                        if let Ok(v) = serde_json::from_slice::<Value>(frame.payload()) {
                            self.sent.entry(conn.0).or_default().push(v);
                        }
                        *self.unwritten.entry(conn.0).or_default() += frame.len() as u64;
                        if !self.stalled.contains(&conn.0) {
                            written.push(conn);
                        }
                    }
                    Command::Close { conn, code, .. } => panic!("{conn} closed with {code}"),
                    other => self.requests.push(other),
                }
            }
            if written.is_empty() {
                return;
            }
            for conn in written {
                self.write(conn.0);
            }
        }
    }

    /// The socket of `conn` takes all it was given.
    fn write(&mut self, conn: u64) {
        let bytes = self.unwritten.remove(&conn).unwrap_or(0);
        self.hub.handle(
            clocks(UnixMillis(self.now)),
            Input::Written {
                conn: ConnId(conn),
                bytes,
            },
        );
    }

    fn text(&mut self, conn: u64, message: Value) {
        self.input(live::text(ConnId(conn), Bytes::from(message.to_string())));
    }

    /// Time passes to `t` (ms after T0), the hub's deadlines firing on the way.
    fn advance_to(&mut self, t: i64) {
        let target = T0 + t;
        while let Some(due) = self.hub.poll_timeout().map(wall_of) {
            if due.as_i64() > target {
                break;
            }
            self.now = self.now.max(due.as_i64());
            self.input(Input::Timeout);
        }
        self.now = target;
        self.input(Input::Timeout);
    }

    /// Bytes given to the socket of `conn` and not taken.
    fn unwritten_bytes(&self, conn: u64) -> u64 {
        self.unwritten.get(&conn).copied().unwrap_or(0)
    }

    fn take_requests(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.requests)
    }

    fn messages(&mut self, conn: u64) -> Vec<Value> {
        self.sent.remove(&conn).unwrap_or_default()
    }

    /// Starts a replay on `conn` and grants it; returns its snapshot load.
    fn start(&mut self, conn: u64, id: &str, event: &str, from: i64, to: i64, speed: f64) {
        self.text(
            conn,
            json!({"type": "replay", "id": id, "event": event, "from": T0 + from,
                   "to": T0 + to, "speed": speed}),
        );
        let request = match &self.take_requests()[..] {
            [Command::Authorize { request, .. }] => *request,
            other => panic!("expected Authorize, got {other:?}"),
        };
        let visibility = if event == EVENT {
            Visibility::Public
        } else {
            Visibility::Private
        };
        self.input(Input::Visibility {
            request,
            visibility: Ok(visibility),
        });
    }

    fn snapshot_request(&mut self) -> (RequestId, Vec<String>, UnixMillis) {
        match &self.take_requests()[..] {
            [Command::LoadReplaySnapshot {
                request,
                devices,
                at,
                ..
            }] => (*request, devices.clone(), *at),
            other => panic!("expected a replay snapshot load, got {other:?}"),
        }
    }

    fn page_request(&mut self) -> (RequestId, ReplayKey, usize) {
        match &self.take_requests()[..] {
            [Command::LoadReplayPage {
                request,
                after,
                limit,
                ..
            }] => (*request, after.clone(), *limit),
            other => panic!("expected a replay page load, got {other:?}"),
        }
    }
}

fn row(device: &str, t: i64) -> WirePosition {
    WirePosition {
        device_id: device.into(),
        lat: 54.68,
        lon: 25.28,
        ts: T0 + t,
        speed: 0.0,
        course: 0.0,
    }
}

/// `(type, ts after T0)` of each message.
fn shape(messages: &[Value]) -> Vec<(String, Option<i64>)> {
    messages
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap_or("").to_owned(),
                m["ts"].as_i64().map(|ts| ts - T0),
            )
        })
        .collect()
}

fn pos(t: i64) -> (String, Option<i64>) {
    ("position".into(), Some(t))
}

fn kind(k: &str) -> (String, Option<i64>) {
    (k.into(), None)
}

#[test]
fn a_replay_is_subscribed_a_snapshot_at_from_paced_positions_then_replay_end() {
    let mut h = Harness::new();
    // From 10 s to 20 s of event time at 2x: 5 s of wall time.
    h.start(1, "r", EVENT, 10_000, 20_000, 2.0);
    let (load, devices, at) = h.snapshot_request();
    assert_eq!(devices, vec!["A", "B"]);
    assert_eq!(at, UnixMillis(T0 + 10_000));
    h.input(Input::ReplaySnapshot {
        request: load,
        rows: Ok(vec![row("A", 9_000), row("A", 5_000), row("C", 9_500)]),
    });
    let first = h.messages(1);
    assert_eq!(first[0], json!({"type": "subscribed", "topic": "replay:r"}));
    assert_eq!(first[1]["type"], "snapshot");
    assert_eq!(first[1]["topic"], "replay:r");
    assert_eq!(
        first[1]["positions"],
        json!([{"deviceId": "A", "lat": 54.68, "lon": 25.28, "ts": T0 + 9_000}]),
        "the newest per device of the event at `from`"
    );
    let (page, after, limit) = h.page_request();
    assert_eq!(after.ts, UnixMillis(T0 + 10_000));
    assert_eq!(limit, 4, "the read-ahead bound");
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(vec![row("A", 12_000), row("B", 12_000), row("A", 16_000)]),
    });
    // 12 s of event time is 1 s of wall time at 2x.
    h.advance_to(999);
    assert!(
        h.messages(1).is_empty(),
        "not before the clock reaches 12 s"
    );
    h.advance_to(1_000);
    let sent = h.messages(1);
    assert_eq!(shape(&sent), vec![pos(12_000), pos(12_000)]);
    assert_eq!(sent[0]["topic"], "replay:r");
    assert_eq!(sent[0]["deviceId"], "A");
    assert_eq!(sent[1]["deviceId"], "B");
    h.advance_to(3_000);
    assert_eq!(shape(&h.messages(1)), vec![pos(16_000)]);
    h.advance_to(4_999);
    assert!(
        h.messages(1).is_empty(),
        "the end comes when the clock reaches `to`"
    );
    h.advance_to(5_000);
    assert_eq!(
        h.messages(1),
        vec![json!({"type": "replay_end", "topic": "replay:r"})]
    );
    h.advance_to(60_000);
    assert!(h.messages(1).is_empty());
}

/// Starts a replay from 0 to 100 s and answers its snapshot; returns the first page load.
fn playing(h: &mut Harness, speed: f64) -> RequestId {
    h.start(1, "r", EVENT, 0, 100_000, speed);
    let (load, _, _) = h.snapshot_request();
    h.input(Input::ReplaySnapshot {
        request: load,
        rows: Ok(vec![]),
    });
    h.messages(1);
    h.page_request().0
}

#[test]
fn pause_and_speed_steer_the_clock() {
    let mut h = Harness::new();
    let page = playing(&mut h, 1.0);
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(vec![row("A", 1_000), row("A", 3_000), row("A", 10_000)]),
    });
    h.advance_to(1_000);
    assert_eq!(shape(&h.messages(1)), vec![pos(1_000)]);
    h.text(
        1,
        json!({"type": "replay_control", "id": "r", "paused": true}),
    );
    h.advance_to(50_000);
    assert!(h.messages(1).is_empty(), "paused");
    h.text(
        1,
        json!({"type": "replay_control", "id": "r", "paused": false}),
    );
    h.advance_to(51_999);
    assert!(h.messages(1).is_empty());
    h.advance_to(52_000);
    assert_eq!(shape(&h.messages(1)), vec![pos(3_000)]);
    // At 10x the 7 s to 10 s take 0.7 s.
    h.text(1, json!({"type": "replay_control", "id": "r", "speed": 10}));
    h.advance_to(52_699);
    assert!(h.messages(1).is_empty());
    h.advance_to(52_700);
    assert_eq!(shape(&h.messages(1)), vec![pos(10_000)]);
}

#[test]
fn a_seek_sends_a_snapshot_at_its_time_and_continues_from_there() {
    let mut h = Harness::new();
    let page = playing(&mut h, 1.0);
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(vec![row("A", 1_000), row("A", 2_000)]),
    });
    h.advance_to(1_000);
    assert_eq!(shape(&h.messages(1)), vec![pos(1_000)]);
    h.text(
        1,
        json!({"type": "replay_control", "id": "r", "seek": T0 + 50_000}),
    );
    let (load, _, at) = h.snapshot_request();
    assert_eq!(at, UnixMillis(T0 + 50_000));
    h.advance_to(5_000);
    assert!(h.messages(1).is_empty(), "nothing of the old time follows");
    h.input(Input::ReplaySnapshot {
        request: load,
        rows: Ok(vec![row("B", 49_000)]),
    });
    let snapshot = h.messages(1);
    assert_eq!(shape(&snapshot), vec![kind("snapshot")]);
    assert_eq!(snapshot[0]["positions"][0]["ts"], T0 + 49_000);
    let (page, after, _) = h.page_request();
    assert_eq!(after.ts, UnixMillis(T0 + 50_000));
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(vec![row("B", 51_000)]),
    });
    h.advance_to(6_000);
    assert_eq!(shape(&h.messages(1)), vec![pos(51_000)]);
}

#[test]
fn seeks_while_a_snapshot_loads_wait_for_it_and_load_the_last_time_sought() {
    let mut h = Harness::new();
    h.start(1, "r", EVENT, 0, 100_000, 1.0);
    let (first, _, _) = h.snapshot_request();
    h.messages(1);
    for at in [10_000, 20_000, 30_000] {
        h.text(
            1,
            json!({"type": "replay_control", "id": "r", "seek": T0 + at}),
        );
        assert!(h.take_requests().is_empty(), "one snapshot load at a time");
    }
    // The load in flight answers for its old time: dropped, and the last seek loaded.
    h.input(Input::ReplaySnapshot {
        request: first,
        rows: Ok(vec![row("A", 0)]),
    });
    assert!(
        h.messages(1).is_empty(),
        "no snapshot of a time no longer shown"
    );
    let (last, _, at) = h.snapshot_request();
    assert_eq!(at, UnixMillis(T0 + 30_000));
    h.input(Input::ReplaySnapshot {
        request: last,
        rows: Ok(vec![row("A", 29_000)]),
    });
    let snapshot = h.messages(1);
    assert_eq!(shape(&snapshot), vec![kind("snapshot")]);
    assert_eq!(snapshot[0]["positions"][0]["ts"], T0 + 29_000);
}

#[test]
fn a_replay_with_a_trail_asks_for_one_within_the_maximum() {
    let mut h = Harness::new();
    h.text(
        1,
        json!({"type": "replay", "id": "r", "event": EVENT, "from": T0, "to": T0 + 1_000,
               "speed": 1, "trail_s": 60}),
    );
    let request = match &h.take_requests()[..] {
        [Command::Authorize { request, .. }] => *request,
        other => panic!("expected Authorize, got {other:?}"),
    };
    h.input(Input::Visibility {
        request,
        visibility: Ok(Visibility::Public),
    });
    match &h.take_requests()[..] {
        [Command::LoadReplaySnapshot { history, .. }] => assert!(
            matches!(
                history,
                HistoryQuery::Trail {
                    window_ms: 60_000,
                    ..
                }
            ),
            "{history:?}"
        ),
        other => panic!("expected a replay snapshot load, got {other:?}"),
    }
    let max = LiveConfig::default().trail_max_s;
    h.text(
        1,
        json!({"type": "replay", "id": "r2", "event": EVENT, "from": T0, "to": T0 + 1_000,
               "speed": 1, "trail_s": max + 1}),
    );
    assert!(h.take_requests().is_empty());
    let refused = h.messages(1);
    assert_eq!(
        refused.last().map(|m| m["code"].clone()),
        Some(json!("bad_request"))
    );
}

#[test]
fn a_slow_reader_slows_its_replay_and_loses_nothing() {
    let mut h = Harness::new();
    let page = playing(&mut h, 1.0);
    let rows: Vec<WirePosition> = (1..=4).map(|s| row("A", s * 1_000)).collect();
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(rows),
    });
    h.stalled.insert(1);
    // Each position is about 110 bytes: over the 200-byte threshold after two.
    h.advance_to(10_000);
    let before = h.messages(1);
    assert!(
        before.len() < 4,
        "a stalled socket stops the clock: {before:?}"
    );
    // The reader catches up much later: the rest follows, paced from where it stopped.
    h.now = T0 + 100_000;
    h.stalled.remove(&1);
    h.write(1);
    h.drain();
    h.advance_to(200_000);
    let after = h.messages(1);
    let all: Vec<_> = shape(&before).into_iter().chain(shape(&after)).collect();
    assert_eq!(
        all.iter()
            .filter(|m| m.0 == "position")
            .cloned()
            .collect::<Vec<_>>(),
        vec![pos(1_000), pos(2_000), pos(3_000), pos(4_000)],
        "every position once, in order"
    );
}

#[test]
fn the_read_ahead_is_bounded_and_refilled_at_half() {
    let mut h = Harness::new();
    let page = playing(&mut h, 1.0);
    let rows: Vec<WirePosition> = (1..=4).map(|s| row("A", s * 1_000)).collect();
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(rows),
    });
    assert!(h.take_requests().is_empty(), "full: no read");
    h.advance_to(2_000);
    let (_, after, limit) = h.page_request();
    assert_eq!(
        (after.ts, after.device.as_str()),
        (UnixMillis(T0 + 4_000), "A")
    );
    assert_eq!(limit, 2);
}

#[test]
fn limits_per_connection_and_in_total_get_limit_exceeded() {
    let mut h = Harness::new();
    h.start(1, "a", EVENT, 0, 1_000, 1.0);
    h.take_requests();
    h.start(1, "b", EVENT, 0, 1_000, 1.0);
    h.take_requests();
    h.messages(1);
    h.text(
        1,
        json!({"type": "replay", "id": "c", "event": EVENT, "from": T0, "to": T0, "speed": 1}),
    );
    let refused = h.messages(1);
    assert_eq!(refused[0]["code"], "limit_exceeded");
    assert_eq!(refused[0]["topic"], "replay:c");
    h.start(2, "a", EVENT, 0, 1_000, 1.0);
    h.take_requests();
    h.messages(2);
    h.text(
        2,
        json!({"type": "replay", "id": "b", "event": EVENT, "from": T0, "to": T0, "speed": 1}),
    );
    let refused = h.messages(2);
    assert_eq!(refused[0]["code"], "limit_exceeded", "{refused:?}");
    // Stopping one makes room.
    h.text(1, json!({"type": "unsubscribe", "topic": "replay:a"}));
    assert_eq!(
        h.messages(1),
        vec![json!({"type": "unsubscribed", "topic": "replay:a"})]
    );
    h.start(2, "b", EVENT, 0, 1_000, 1.0);
    assert_eq!(h.messages(2)[0]["type"], "subscribed");
}

#[test]
fn shards_share_the_instance_replay_limit() {
    let budget = Arc::new(ReplayBudget::new(2));
    let mut one = Harness::sharing(budget.clone());
    let mut two = Harness::sharing(budget.clone());
    for h in [&mut one, &mut two] {
        h.start(1, "a", EVENT, 0, 1_000, 1.0);
        h.take_requests();
        assert_eq!(h.messages(1)[0]["type"], "subscribed");
    }
    assert_eq!(budget.taken(), 2);
    // A third is refused, though neither shard runs more than one.
    two.text(
        2,
        json!({"type": "replay", "id": "b", "event": EVENT, "from": T0, "to": T0, "speed": 1}),
    );
    assert_eq!(two.messages(2)[0]["code"], "limit_exceeded");
    // Starting a running one over under its id takes no second slot.
    one.start(1, "a", EVENT, 0, 2_000, 1.0);
    one.take_requests();
    assert_eq!(one.messages(1)[0]["type"], "subscribed");
    assert_eq!(budget.taken(), 2);
    // One stops: the other shard has room.
    one.text(1, json!({"type": "unsubscribe", "topic": "replay:a"}));
    assert_eq!(budget.taken(), 1);
    two.start(2, "b", EVENT, 0, 1_000, 1.0);
    assert_eq!(two.messages(2)[0]["type"], "subscribed");
    assert_eq!(budget.taken(), 2);
    // A shard that ends gives its slots back.
    drop(two);
    assert_eq!(budget.taken(), 0);
}

#[test]
fn a_replay_of_a_private_event_is_forbidden_like_a_subscription() {
    let mut h = Harness::new();
    h.start(1, "r", PRIVATE, 0, 1_000, 1.0);
    assert_eq!(
        h.messages(1),
        vec![
            json!({"type": "error", "code": "forbidden", "topic": "replay:r",
                    "message": "topic does not exist or is not allowed"})
        ]
    );
    assert!(h.take_requests().is_empty());
}

#[test]
fn an_unsubscribed_replay_sends_nothing_more() {
    let mut h = Harness::new();
    let page = playing(&mut h, 1.0);
    h.text(1, json!({"type": "unsubscribe", "topic": "replay:r"}));
    h.messages(1);
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(vec![row("A", 1_000)]),
    });
    h.advance_to(200_000);
    assert!(h.messages(1).is_empty());
    h.text(
        1,
        json!({"type": "replay_control", "id": "r", "paused": true}),
    );
    assert_eq!(h.messages(1)[0]["code"], "bad_request");
}

#[test]
fn a_closed_connection_takes_only_its_own_replays_with_it() {
    let mut h = Harness::new();
    h.start(1, "r", EVENT, 0, 10_000, 1.0);
    let (load_1, _, _) = h.snapshot_request();
    h.start(2, "r", EVENT, 0, 10_000, 1.0);
    let (load_2, _, _) = h.snapshot_request();
    h.messages(1);
    h.input(Input::Closed { conn: ConnId(1) });
    // Connection 2's replay goes on: its snapshot is sent and its first page asked for.
    h.input(Input::ReplaySnapshot {
        request: load_2,
        rows: Ok(vec![]),
    });
    assert_eq!(
        shape(&h.messages(2)),
        vec![kind("subscribed"), kind("snapshot")]
    );
    h.page_request();
    // Connection 1's answer comes to nothing.
    h.input(Input::ReplaySnapshot {
        request: load_1,
        rows: Ok(vec![]),
    });
    assert!(h.messages(1).is_empty());
    assert!(h.take_requests().is_empty());
}

#[test]
fn a_replay_whose_look_up_fails_gets_an_error_and_counts_it() {
    let mut h = Harness::new();
    h.text(
        1,
        json!({"type": "replay", "id": "r", "event": EVENT, "from": T0, "to": T0 + 1_000,
               "speed": 1.0}),
    );
    let request = match &h.take_requests()[..] {
        [Command::Authorize { request, .. }] => *request,
        other => panic!("expected Authorize, got {other:?}"),
    };
    h.input(Input::Visibility {
        request,
        visibility: Err(live::LookupFailed("Postgres away".into())),
    });
    let sent = h.messages(1);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["type"], "error");
    assert_eq!(sent[0]["topic"], "replay:r");
    assert_eq!(h.hub.stats().lookup_failures, 1);
    assert!(h.take_requests().is_empty());
}

#[test]
fn a_stalled_reader_gets_what_is_due_up_to_the_threshold_and_the_rest_as_it_drains() {
    let mut h = Harness::new();
    let page = playing(&mut h, 1.0);
    h.input(Input::ReplayPage {
        request: page,
        rows: Ok(vec![
            row("A", 1_000),
            row("B", 1_000),
            row("A", 1_500),
            row("B", 1_500),
        ]),
    });
    h.stalled.insert(1);
    // One wake-up sends everything due while the client keeps up: both fixes of 1 s
    // (about 97 bytes each, under the 200-byte threshold together).
    h.now = T0 + 1_000;
    h.input(Input::Timeout);
    assert_eq!(shape(&h.messages(1)), vec![pos(1_000), pos(1_000)]);
    // The first fix of 1.5 s passes the threshold: the second waits, though it is due.
    h.now = T0 + 1_500;
    h.input(Input::Timeout);
    assert_eq!(shape(&h.messages(1)), vec![pos(1_500)]);
    // The socket takes it all: what was due goes out at once, without waiting for time.
    h.stalled.remove(&1);
    h.write(1);
    h.drain();
    assert_eq!(shape(&h.messages(1)), vec![pos(1_500)]);
}

#[test]
fn a_queue_of_exactly_the_threshold_is_not_behind() {
    // Two fixes 1 ms apart, for a reader that takes nothing.
    let stalled_after_one = |config: LiveConfig| {
        let mut h = Harness::with(config);
        let page = playing(&mut h, 1.0);
        let rows = vec![row("A", 1_000), row("A", 1_001), row("A", 1_002)];
        h.input(Input::ReplayPage {
            request: page,
            rows: Ok(rows),
        });
        h.stalled.insert(1);
        h.now = T0 + 1_000;
        h.input(Input::Timeout);
        assert_eq!(shape(&h.messages(1)), vec![pos(1_000)]);
        h
    };
    // The first one's frame, queued alone, is the threshold.
    let queued = stalled_after_one(config()).unwritten_bytes(1);
    let mut h = stalled_after_one(LiveConfig {
        conflate_threshold_bytes: queued,
        ..config()
    });
    // Not over it: the replay's clock runs on and the next fix goes out when due.
    h.now = T0 + 1_001;
    h.input(Input::Timeout);
    assert_eq!(shape(&h.messages(1)), vec![pos(1_001)]);
    // Over it: the clock stops, though the third is due.
    h.now = T0 + 1_002;
    h.input(Input::Timeout);
    assert_eq!(shape(&h.messages(1)), vec![]);
}

#[test]
fn a_replay_snapshot_is_counted_and_a_failed_load_ends_the_replay() {
    let mut h = Harness::new();
    h.start(1, "r", EVENT, 0, 10_000, 1.0);
    let (load, _, _) = h.snapshot_request();
    h.input(Input::ReplaySnapshot {
        request: load,
        rows: Ok(vec![]),
    });
    assert_eq!(h.hub.stats().snapshots, 1);
    let (page, _, _) = h.page_request();
    h.messages(1);
    h.input(Input::ReplayPage {
        request: page,
        rows: Err(live::LookupFailed("Postgres away".into())),
    });
    let sent = h.messages(1);
    assert_eq!(shape(&sent), vec![kind("error"), kind("unsubscribed")]);
    assert_eq!(h.hub.stats().lookup_failures, 1);
}

#[test]
fn a_seek_while_a_page_loads_loads_a_snapshot_at_once() {
    let mut h = Harness::new();
    playing(&mut h, 1.0);
    // The first page is still loading.
    h.text(
        1,
        json!({"type": "replay_control", "id": "r", "seek": T0 + 50_000}),
    );
    let (_, _, at) = h.snapshot_request();
    assert_eq!(at, UnixMillis(T0 + 50_000));
}
