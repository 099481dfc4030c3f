//! The live hub under a random shell: random connections, client messages, answers, stream
//! batches, map versions, drains and ticks, with the contract's guarantees checked on every
//! command.

#[path = "common/clocks.rs"]
mod clocks;

use clocks::{clocks, wall_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::faulty::FaultyThresholds;
use processor_core::live::client_view::{Asked, ClientView, Reading, Shown};
use processor_core::live::{
    self, close_code, close_reason, Command, ConnId, DeviceMap, Ingest, IngestInput, Input,
    LiveConfig, LiveHub, LookupFailed, Principal, RequestId, Visibility,
};
use processor_core::stream::EntryId;
use processor_core::websocket::{ClientFrame, FrameError, Opcode};
use processor_core::wire::{Topic, WirePosition};
use processor_core::UnixMillis;

const T0: i64 = 1_764_324_000_000;
const DEVICES: usize = 4;
const EVENTS: usize = 3;
const MAX_FUTURE_MS: i64 = 60_000;
const WRITE_TIMEOUT_MS: i64 = 3_000;

fn event(i: usize) -> Uuid {
    Uuid::from_u128(0x1111_1111_1111_4111_8111_0000_0000_0000 + i as u128)
}

fn device(i: usize) -> String {
    format!("D{i}")
}

fn config() -> LiveConfig {
    LiveConfig {
        max_message_bytes: 256,
        max_bad_messages: 3,
        max_subscriptions: 2,
        conflate_threshold_bytes: 500,
        backpressure_threshold_bytes: 1_500,
        ping_interval_ms: 1_000,
        write_timeout_ms: WRITE_TIMEOUT_MS as u64,
        // The model below does not judge the rate or re-checks (core/tests/live.rs does).
        max_messages_per_s: 1_000_000,
        visibility_recheck_ms: 1 << 40,
        faulty: FaultyThresholds {
            min_satellites: 3,
            max_future_ms: MAX_FUTURE_MS as u64,
            min_timestamp: processor_core::UnixMillis(i64::MIN),
        },
        max_speed_kmh: 500.0,
        reanchor_gap_ms: 600_000,
        reanchor_after_fixes: 3,
        ..LiveConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Good,
    Jump,
    NullIsland,
    FewSatellites,
    Future,
    Undecodable,
    /// The device's last fix again (a tracker re-sending after a lost ack).
    Repeat,
}

#[derive(Debug, Clone)]
struct Fix {
    device: usize,
    /// Fix time relative to now.
    dts: i64,
    kind: Kind,
    noise: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Connect {
        admin: bool,
        events: Vec<usize>,
    },
    Subscribe {
        conn: usize,
        event: usize,
    },
    Unsubscribe {
        conn: usize,
        event: usize,
    },
    Ping {
        conn: usize,
    },
    Garbage {
        conn: usize,
    },
    AnswerAuth {
        pick: usize,
        visibility: u8,
        fail: bool,
    },
    AnswerSnapshot {
        pick: usize,
        rows: Vec<(usize, i64)>,
        fail: bool,
    },
    Positions(Vec<Fix>),
    Map(Vec<(usize, usize)>),
    Drain {
        conn: usize,
        quarter: u8,
    },
    Pong {
        conn: usize,
    },
    Closed {
        conn: usize,
    },
    TooLarge {
        conn: usize,
    },
    /// A WebSocket ping frame from the client, with this many payload bytes.
    WsPing {
        conn: usize,
        len: u8,
    },
    /// The client's close frame.
    WsClose {
        conn: usize,
    },
    /// A framing error (1002) or a text message that is not UTF-8 (1007).
    Violation {
        conn: usize,
        utf8: bool,
    },
    Tick {
        ms: i64,
    },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        12 => Just(Kind::Good),
        1 => Just(Kind::Jump),
        1 => Just(Kind::NullIsland),
        1 => Just(Kind::FewSatellites),
        1 => Just(Kind::Future),
        1 => Just(Kind::Undecodable),
        2 => Just(Kind::Repeat),
    ]
}

fn fix() -> impl Strategy<Value = Fix> {
    (
        0..DEVICES,
        prop_oneof![1 => -5_000i64..0, 4 => -200i64..600],
        kind(),
        any::<u8>(),
    )
        .prop_map(|(device, dts, kind, noise)| Fix {
            device,
            dts,
            kind,
            noise,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0usize..6;
    let visibility = prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)];
    prop_oneof![
        3 => (any::<bool>(), prop::collection::vec(0..EVENTS, 0..2))
            .prop_map(|(admin, events)| Op::Connect { admin, events }),
        6 => (conn.clone(), 0..EVENTS + 1).prop_map(|(conn, event)| Op::Subscribe { conn, event }),
        1 => (conn.clone(), 0..EVENTS + 1).prop_map(|(conn, event)| Op::Unsubscribe { conn, event }),
        1 => conn.clone().prop_map(|conn| Op::Ping { conn }),
        1 => conn.clone().prop_map(|conn| Op::Garbage { conn }),
        6 => (any::<usize>(), visibility, prop::bool::weighted(0.05))
            .prop_map(|(pick, visibility, fail)| Op::AnswerAuth { pick, visibility, fail }),
        6 => (any::<usize>(), prop::collection::vec((0..DEVICES, -6_000i64..3_000), 0..4), prop::bool::weighted(0.05))
            .prop_map(|(pick, rows, fail)| Op::AnswerSnapshot { pick, rows, fail }),
        16 => prop::collection::vec(fix(), 1..8).prop_map(Op::Positions),
        1 => prop::collection::vec((0..DEVICES, 0..EVENTS), 0..8).prop_map(Op::Map),
        7 => (conn.clone(), 0u8..6).prop_map(|(conn, quarter)| Op::Drain { conn, quarter }),
        5 => conn.clone().prop_map(|conn| Op::Pong { conn }),
        1 => conn.clone().prop_map(|conn| Op::Closed { conn }),
        1 => conn.clone().prop_map(|conn| Op::TooLarge { conn }),
        1 => (conn.clone(), 0u8..126).prop_map(|(conn, len)| Op::WsPing { conn, len }),
        1 => conn.clone().prop_map(|conn| Op::WsClose { conn }),
        1 => (conn.clone(), any::<bool>()).prop_map(|(conn, utf8)| Op::Violation { conn, utf8 }),
        3 => (0i64..1_200).prop_map(|ms| Op::Tick { ms }),
    ]
}

#[derive(Debug)]
struct Client {
    open: bool,
    queued: u64,
    /// What the client may see of its topics, judged by the checker the simulation's
    /// clients use too; read here as the hub sends it, so strictly.
    view: ClientView,
    /// Since when the socket has held bytes without taking any, as the shell reported its
    /// write attempts: started by an attempt that leaves bytes queued, restarted by one
    /// that takes some, ended by one that empties the queue.
    stalled_since: Option<i64>,
    /// Payloads of the client's WebSocket pings not yet echoed, in order.
    pings: Vec<Vec<u8>>,
    /// The code of the `Close` that ended the connection.
    closed_with: Option<u16>,
    /// The largest snapshot frame sent: one snapshot may be over the back-pressure
    /// threshold while it drains.
    largest_snapshot: u64,
}

impl Client {
    fn new() -> Client {
        Client {
            open: true,
            queued: 0,
            view: ClientView::new(Reading::AsSent),
            stalled_since: None,
            pings: Vec::new(),
            closed_with: None,
            largest_snapshot: 0,
        }
    }

    /// The connection ended: nothing of it may follow.
    fn close(&mut self) {
        self.open = false;
        self.view = ClientView::new(Reading::AsSent);
    }
}

fn open_client(clients: &mut [Client], conn: ConnId) -> Result<&mut Client, TestCaseError> {
    let client = clients
        .get_mut(conn.0 as usize)
        .ok_or_else(|| TestCaseError::fail(format!("unknown {conn}")))?;
    prop_assert!(client.open, "command for {} after its close", conn);
    Ok(client)
}

/// A random shell driving the hub, checking every command against the contract.
struct Shell {
    ingest: Ingest,
    hub: LiveHub,
    now: i64,
    next_entry: u64,
    clients: Vec<Client>,
    auths: Vec<RequestId>,
    loads: Vec<(RequestId, Vec<String>)>,
    /// Fixes the stateless rules let through, and snapshot rows handed in.
    good: BTreeSet<(String, i64)>,
    stored: BTreeSet<(String, i64)>,
    log: Vec<Command>,
    position_sends: u64,
    /// Connections closed for a protocol violation (1002, 1007), and for their write
    /// timeout.
    violation_closes: u64,
    write_timeout_closes: u64,
    /// Fix time of each device's last generated fix.
    last_fix: BTreeMap<usize, i64>,
}

impl Shell {
    fn new() -> Shell {
        let initial = (0..DEVICES)
            .map(|d| (device(d), [event(d % EVENTS)].into()))
            .collect();
        let mut shell = Shell {
            ingest: Ingest::new(&config()),
            hub: LiveHub::new(config(), clocks(UnixMillis(T0))),
            now: 0,
            next_entry: 0,
            clients: Vec::new(),
            auths: Vec::new(),
            loads: Vec::new(),
            good: BTreeSet::new(),
            stored: BTreeSet::new(),
            log: Vec::new(),
            position_sends: 0,
            violation_closes: 0,
            write_timeout_closes: 0,
            last_fix: BTreeMap::new(),
        };
        shell.device_map(1, initial);
        shell
    }

    fn handle(&mut self, input: Input) {
        self.hub.handle(clocks(self.now()), input);
    }

    /// A map version, for the ingest and the hub alike.
    fn device_map(&mut self, version: u64, by_device: BTreeMap<String, BTreeSet<Uuid>>) {
        let map = Arc::new(DeviceMap::new(version, by_device));
        self.ingest
            .handle(self.now(), IngestInput::DeviceMap(Arc::clone(&map)));
        self.handle(Input::DeviceMap(map));
    }

    fn frame(&mut self, conn: ConnId, frame: Result<ClientFrame, FrameError>) {
        self.handle(Input::Frame { conn, frame });
    }

    /// Time passed: the hub's timers run, and every connection whose write deadline has
    /// come must have been closed.
    fn tick(&mut self) -> Result<(), TestCaseError> {
        self.handle(Input::Timeout);
        self.collect()?;
        for (i, client) in self.clients.iter().enumerate() {
            if let (true, Some(since)) = (client.open, client.stalled_since) {
                prop_assert!(
                    self.now < since + WRITE_TIMEOUT_MS,
                    "c{} stalled since {} is open at {}",
                    i,
                    since,
                    self.now
                );
            }
        }
        Ok(())
    }

    fn now(&self) -> UnixMillis {
        UnixMillis(T0 + self.now)
    }

    fn conn(&self, i: usize) -> Option<ConnId> {
        if self.clients.is_empty() {
            None
        } else {
            Some(ConnId((i % self.clients.len()) as u64))
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Connect { admin, events } => {
                let id = ConnId(self.clients.len() as u64);
                self.clients.push(Client::new());
                let principal = if events.is_empty() && !admin {
                    Principal::Anonymous
                } else {
                    let names: Vec<String> = events
                        .iter()
                        .map(|e| event(*e).to_string().to_uppercase())
                        .collect();
                    Principal::from_claims(
                        names.iter().map(String::as_str),
                        admin.then_some("admin"),
                    )
                };
                self.handle(Input::Connected {
                    conn: id,
                    principal,
                    expires_at: None,
                });
            }
            Op::Subscribe { conn, event: e } | Op::Unsubscribe { conn, event: e } => {
                let Some(id) = self.conn(*conn) else {
                    return Ok(());
                };
                let subscribe = matches!(op, Op::Subscribe { .. });
                let topic = Topic(event(*e)).to_string();
                let text = json!({
                    "type": if subscribe { "subscribe" } else { "unsubscribe" },
                    "topic": topic,
                })
                .to_string();
                let client = &mut self.clients[id.0 as usize];
                if client.open {
                    if subscribe {
                        client.view.requested(&topic, Asked::Newest);
                    } else {
                        client.view.unsubscribe_requested(&topic);
                    }
                }
                self.handle(live::text(id, text));
            }
            Op::Ping { conn } => {
                if let Some(id) = self.conn(*conn) {
                    self.handle(live::text(id, &br#"{"type":"ping"}"#[..]));
                }
            }
            Op::Garbage { conn } => {
                if let Some(id) = self.conn(*conn) {
                    self.handle(live::text(id, &b"{nope"[..]));
                }
            }
            Op::AnswerAuth {
                pick,
                visibility,
                fail,
            } => {
                if self.auths.is_empty() {
                    return Ok(());
                }
                let request = self.auths.remove(pick % self.auths.len());
                let visibility = if *fail {
                    Err(LookupFailed("postgres away".into()))
                } else {
                    Ok(match visibility {
                        0 => Visibility::Public,
                        1 => Visibility::Private,
                        _ => Visibility::Unknown,
                    })
                };
                self.handle(Input::Visibility {
                    request,
                    visibility,
                });
            }
            Op::AnswerSnapshot { pick, rows, fail } => {
                if self.loads.is_empty() {
                    return Ok(());
                }
                let (request, devices) = self.loads.remove(pick % self.loads.len());
                if *fail {
                    self.handle(Input::Snapshot {
                        request,
                        rows: Err(LookupFailed("postgres away".into())),
                    });
                } else {
                    let rows: Vec<WirePosition> = rows
                        .iter()
                        .filter_map(|(d, dts)| {
                            let id = device(*d);
                            devices.contains(&id).then(|| WirePosition {
                                device_id: id,
                                lat: 54.5,
                                lon: 25.5,
                                ts: T0 + self.now + dts,
                                speed: 0.0,
                                course: 0.0,
                            })
                        })
                        .collect();
                    for r in &rows {
                        self.stored.insert((r.device_id.clone(), r.ts));
                    }
                    self.handle(Input::Snapshot {
                        request,
                        rows: Ok(rows),
                    });
                }
            }
            Op::Positions(fixes) => {
                // Time passes between batches; the shell runs due timers first.
                self.now += 250;
                let now = self.now();
                self.tick()?;
                let mut entries = Vec::new();
                for f in fixes {
                    let mut ts = self.now + f.dts;
                    // Good fixes lie on one slow track (about 4 km/h), so that only the
                    // jumps break the speed limit.
                    let track = 54.68 + ts as f64 * 1e-8;
                    let noise = f64::from(f.noise) * 1e-5;
                    let (mut lat, lon, mut satellites) = (track, 25.28, 9);
                    match f.kind {
                        Kind::Good => {}
                        Kind::Jump => lat = 10.0 + noise,
                        Kind::NullIsland => lat = 0.0,
                        Kind::FewSatellites => satellites = 2,
                        Kind::Future => ts = self.now + MAX_FUTURE_MS + 1 + i64::from(f.noise),
                        Kind::Repeat => {
                            if let Some(&last) = self.last_fix.get(&f.device) {
                                ts = last;
                                lat = 54.68 + ts as f64 * 1e-8;
                            }
                        }
                        Kind::Undecodable => {
                            self.next_entry += 1;
                            let payload = (f.noise % 2 == 0).then(|| Bytes::from_static(b"{"));
                            entries.push((EntryId::new(self.next_entry, 0), payload));
                            continue;
                        }
                    }
                    self.last_fix.insert(f.device, ts);
                    let faulty = (lat == 0.0 && lon == 0.0)
                        || satellites < 3
                        || ts > self.now + MAX_FUTURE_MS;
                    // Once good, a (device, ts) stays allowed: a faulty fix with the same
                    // key looks the same on the wire as the good one that may be parked.
                    if !faulty {
                        self.good.insert((device(f.device), T0 + ts));
                    }
                    let payload = json!({
                        "device_id": device(f.device),
                        "timestamp": T0 + ts,
                        "latitude": if matches!(f.kind, Kind::NullIsland) { 0.0 } else { lat },
                        "longitude": if matches!(f.kind, Kind::NullIsland) { 0.0 } else { lon },
                        "satellites": satellites,
                    });
                    self.next_entry += 1;
                    entries.push((
                        EntryId::new(self.next_entry, 0),
                        Some(Bytes::from(payload.to_string())),
                    ));
                }
                self.ingest.handle(now, IngestInput::Entries(entries));
                while let Some(batch) = self.ingest.poll_batch() {
                    self.hub.handle(clocks(now), Input::Batch(batch));
                }
            }
            Op::Map(pairs) => {
                let mut map: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
                for (d, e) in pairs {
                    map.entry(device(*d)).or_default().insert(event(*e));
                }
                let version = self.hub.device_map_version().unwrap_or(0) + 1;
                self.device_map(version, map);
            }
            Op::Drain { conn, quarter } => {
                if let Some(id) = self.conn(*conn) {
                    let client = &mut self.clients[id.0 as usize];
                    // Up to 5/4 of what is queued: a shell reporting too much must not
                    // drive the count negative.
                    let bytes = client.queued * u64::from(*quarter) / 4;
                    client.queued = client.queued.saturating_sub(bytes);
                    if client.open {
                        if client.queued == 0 {
                            client.stalled_since = None;
                        } else if bytes > 0 || client.stalled_since.is_none() {
                            client.stalled_since = Some(self.now);
                        }
                    }
                    self.handle(Input::Written { conn: id, bytes });
                }
            }
            Op::Pong { conn } => {
                // Usually every client answers its pings; sometimes only one does.
                if conn % 3 == 0 {
                    if let Some(id) = self.conn(*conn) {
                        self.frame(id, Ok(ClientFrame::Pong));
                    }
                } else {
                    for i in 0..self.clients.len() {
                        self.frame(ConnId(i as u64), Ok(ClientFrame::Pong));
                    }
                }
            }
            Op::Closed { conn } => {
                if let Some(id) = self.conn(*conn) {
                    let client = &mut self.clients[id.0 as usize];
                    client.close();
                    self.handle(Input::Closed { conn: id });
                }
            }
            Op::TooLarge { conn } => {
                if let Some(id) = self.conn(*conn) {
                    self.frame(id, Err(FrameError::TooLarge));
                }
            }
            Op::WsPing { conn, len } => {
                if let Some(id) = self.conn(*conn) {
                    let payload: Vec<u8> = (0..*len).collect();
                    let client = &mut self.clients[id.0 as usize];
                    if client.open {
                        client.pings.push(payload.clone());
                    }
                    self.frame(id, Ok(ClientFrame::Ping(Bytes::from(payload))));
                }
            }
            Op::WsClose { conn } => {
                if let Some(id) = self.conn(*conn) {
                    self.frame(id, Ok(ClientFrame::Close(Some(1000))));
                    self.expect_closed(id, close_code::NORMAL)?;
                }
            }
            Op::Violation { conn, utf8 } => {
                if let Some(id) = self.conn(*conn) {
                    let (error, code) = if *utf8 {
                        (FrameError::InvalidUtf8, close_code::INVALID_PAYLOAD)
                    } else {
                        (
                            FrameError::Protocol("reserved bits set"),
                            close_code::PROTOCOL_ERROR,
                        )
                    };
                    self.frame(id, Err(error));
                    self.expect_closed(id, code)?;
                }
            }
            Op::Tick { ms } => {
                self.now += ms;
                self.tick()?;
            }
        }
        self.collect()?;
        self.check_state()
    }

    /// After a client frame that ends its connection: closed with `code`, unless it was
    /// closed already.
    fn expect_closed(&mut self, conn: ConnId, code: u16) -> Result<(), TestCaseError> {
        let was_open = self.clients[conn.0 as usize].open;
        self.collect()?;
        let client = &self.clients[conn.0 as usize];
        if was_open {
            prop_assert!(!client.open, "{} still open", conn);
            prop_assert_eq!(client.closed_with, Some(code), "{}", conn);
            if code != close_code::NORMAL {
                self.violation_closes += 1;
            }
        }
        Ok(())
    }

    fn collect(&mut self) -> Result<(), TestCaseError> {
        while let Some(command) = self.hub.poll_command() {
            self.log.push(command.clone());
            self.check(command)?;
        }
        Ok(())
    }

    fn client(&mut self, conn: ConnId) -> Result<&mut Client, TestCaseError> {
        open_client(&mut self.clients, conn)
    }

    fn check(&mut self, command: Command) -> Result<(), TestCaseError> {
        match command {
            Command::VerifyToken { conn, .. } => {
                // The model's clients never send `auth`.
                prop_assert!(false, "{} asked to verify a token", conn);
            }
            Command::LoadReplaySnapshot { conn, .. } | Command::LoadReplayPage { conn, .. } => {
                // The model's clients never start a replay.
                prop_assert!(false, "{} asked to load a replay", conn);
            }
            Command::Authorize { request, conn, .. } => {
                self.client(conn)?;
                self.auths.push(request);
            }
            Command::LoadSnapshot {
                request,
                conn,
                devices,
                ..
            } => {
                self.client(conn)?;
                self.loads.push((request, devices));
            }
            Command::Close { conn, code, reason } => {
                let now = self.now;
                if reason == close_reason::WRITE_TIMEOUT {
                    self.write_timeout_closes += 1;
                }
                let client = self.client(conn)?;
                if reason == close_reason::WRITE_TIMEOUT {
                    prop_assert_eq!(code, close_code::TRY_AGAIN_LATER);
                    let since = client.stalled_since;
                    prop_assert!(
                        since.is_some_and(|s| now >= s + WRITE_TIMEOUT_MS),
                        "{} closed for its write timeout at {}, stalled since {:?}",
                        conn,
                        now,
                        since
                    );
                }
                client.close();
                client.pings.clear();
                client.stalled_since = None;
                client.closed_with = Some(code);
            }
            Command::Send { conn, frame } => {
                let (good, stored) = (&self.good, &self.stored);
                let client = open_client(&mut self.clients, conn)?;
                // What the hub counts queued is what the socket is given: the whole frame.
                client.queued += frame.len() as u64;
                let header = frame.len() - frame.payload().len();
                prop_assert!(
                    (2..=10).contains(&header) && frame.bytes().ends_with(frame.payload()),
                    "malformed {:?}",
                    frame
                );
                match frame.opcode() {
                    Some(Opcode::Text) => {}
                    Some(Opcode::Ping) => {
                        prop_assert!(frame.payload().is_empty(), "{:?}", frame);
                        return Ok(());
                    }
                    Some(Opcode::Pong) => {
                        prop_assert!(!client.pings.is_empty(), "unasked {:?}", frame);
                        let ping = client.pings.remove(0);
                        prop_assert_eq!(frame.payload(), &ping[..], "pong to {}", conn);
                        return Ok(());
                    }
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "{other:?} frame sent: {frame:?}"
                        )))
                    }
                }
                // A live position must have passed the stateless rules; a snapshot may also
                // show the rows handed in as stored.
                let allowed = |device: &str, ts: i64, shown: Shown| {
                    let key = (device.to_owned(), ts);
                    good.contains(&key) || (shown == Shown::Snapshot && stored.contains(&key))
                };
                let broken = client.view.receive(frame.payload(), &allowed);
                prop_assert!(broken.is_empty(), "{} broke {:?}", conn, broken);
                let message: Value = serde_json::from_slice(frame.payload()).unwrap();
                match message["type"].as_str() {
                    Some("snapshot") => {
                        client.largest_snapshot = client.largest_snapshot.max(frame.len() as u64)
                    }
                    Some("position") => self.position_sends += 1,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn check_state(&self) -> Result<(), TestCaseError> {
        let stats = self.hub.stats();
        let open = self.clients.iter().filter(|c| c.open).count() as u64;
        prop_assert_eq!(stats.connections, open);
        prop_assert_eq!(stats.fanout_messages, self.position_sends);
        prop_assert_eq!(stats.protocol_errors, self.violation_closes);
        prop_assert_eq!(stats.write_timeouts, self.write_timeout_closes);
        prop_assert_eq!(
            stats.position_deliveries,
            stats.fanout_messages
                + stats.conflated_messages
                + stats.dropped_messages
                + self.hub.waiting(),
            "deliveries not accounted for: {:?}",
            stats
        );
        for (i, client) in self.clients.iter().enumerate() {
            let conn = ConnId(i as u64);
            prop_assert_eq!(self.hub.is_open(conn), client.open, "{}", conn);
            if client.open {
                prop_assert!(client.pings.is_empty(), "{} pings not echoed", conn);
                prop_assert_eq!(self.hub.queued_bytes(conn), Some(client.queued), "{}", conn);
                let buffered = self.hub.buffered_bytes(conn).unwrap();
                prop_assert!(
                    buffered <= config().backpressure_threshold_bytes + client.largest_snapshot,
                    "{} buffers {} and is still open",
                    conn,
                    buffered
                );
            }
        }
        if let Some(t) = self.hub.poll_timeout().map(wall_of) {
            prop_assert!(t > self.now(), "timer {} not after now {}", t, self.now());
        }
        Ok(())
    }
}

fn run(ops: &[Op]) -> Result<Shell, TestCaseError> {
    let mut shell = Shell::new();
    for op in ops {
        shell.apply(op)?;
    }
    shell.handle(Input::Shutdown);
    shell.collect()?;
    shell.check_state()?;
    prop_assert_eq!(shell.hub.stats().connections, 0);
    prop_assert_eq!(shell.hub.waiting(), 0);
    prop_assert_eq!(shell.hub.poll_timeout().map(wall_of), None);
    Ok(shell)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_random_shell_sees_the_contract_kept(ops in prop::collection::vec(op(), 0..200)) {
        let first = run(&ops)?;
        // Same inputs, same commands.
        let second = run(&ops)?;
        prop_assert!(first.log == second.log, "two runs gave different commands");
    }
}

#[test]
fn a_busy_run_exercises_every_path() {
    // A fixed, long, busy scenario: make sure the property's paths are actually reached.
    let mut ops = vec![
        Op::Connect {
            admin: false,
            events: vec![],
        },
        Op::Connect {
            admin: true,
            events: vec![],
        },
    ];
    for round in 0..60 {
        ops.push(Op::Subscribe {
            conn: round % 2,
            event: round % EVENTS,
        });
        ops.push(Op::AnswerAuth {
            pick: 0,
            visibility: 0,
            fail: false,
        });
        ops.push(Op::AnswerAuth {
            pick: 0,
            visibility: 1,
            fail: false,
        });
        ops.push(Op::Positions(
            (0..DEVICES)
                .map(|device| Fix {
                    device,
                    dts: 0,
                    kind: Kind::Good,
                    noise: round as u8,
                })
                .collect(),
        ));
        ops.push(Op::AnswerSnapshot {
            pick: 0,
            rows: vec![(0, 500), (1, -500)],
            fail: false,
        });
        ops.push(Op::Positions(
            (0..DEVICES)
                .map(|device| Fix {
                    device,
                    dts: 1,
                    kind: Kind::Good,
                    noise: round as u8,
                })
                .collect(),
        ));
        // Client 0 reads now and then; client 1 never does. Both answer pings.
        if round % 3 == 0 {
            ops.push(Op::Drain {
                conn: 0,
                quarter: 4,
            });
        }
        ops.push(Op::Pong { conn: 1 });
        ops.push(Op::Tick { ms: 50 });
    }
    // A third client gets a reply, then its socket takes nothing: it is closed once the
    // write timeout has passed (every client answering its pings meanwhile).
    ops.push(Op::Connect {
        admin: false,
        events: vec![],
    });
    ops.push(Op::Ping { conn: 2 });
    ops.push(Op::Drain {
        conn: 2,
        quarter: 0,
    });
    for _ in 0..3 {
        ops.push(Op::Pong { conn: 1 });
        ops.push(Op::Tick { ms: 1_200 });
    }
    // A fourth pings and then breaks the protocol; a fifth sends invalid UTF-8; a sixth
    // says goodbye.
    for op in [
        Op::Connect {
            admin: false,
            events: vec![],
        },
        Op::WsPing { conn: 3, len: 5 },
        Op::Violation {
            conn: 3,
            utf8: false,
        },
        Op::Connect {
            admin: false,
            events: vec![],
        },
        Op::Violation {
            conn: 4,
            utf8: true,
        },
        Op::Connect {
            admin: false,
            events: vec![],
        },
        Op::WsClose { conn: 5 },
    ] {
        ops.push(op);
    }
    let shell = run(&ops).unwrap();
    let stats = shell.hub.stats();
    assert!(stats.fanout_messages > 0, "{stats:?}");
    assert!(stats.conflated_messages > 0, "{stats:?}");
    assert!(stats.snapshots > 0, "{stats:?}");
    assert!(stats.slow_consumer_closes > 0, "{stats:?}");
    assert!(stats.dropped_messages > 0, "{stats:?}");
    assert_eq!(stats.write_timeouts, 1, "{stats:?}");
    assert_eq!(stats.protocol_errors, 2, "{stats:?}");
    assert_eq!(shell.clients[5].closed_with, Some(close_code::NORMAL));
}
