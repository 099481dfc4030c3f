//! Command transcripts of the live hub: inputs in, exact commands out (contract sections 4
//! and 5).

#[path = "common/clocks.rs"]
mod clocks;

use clocks::{clocks, wall_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::faulty::FaultyThresholds;
use processor_core::live::{
    self, close_code, close_reason, Command, ConnId, DeviceMap, Ingest, IngestInput, IngestStats,
    Input, LiveConfig, LiveHub, LiveStats, LookupFailed, Principal, RequestId, Visibility,
    FORBIDDEN_MESSAGE,
};
use processor_core::stream::EntryId;
use processor_core::websocket::{ClientFrame, Frame, FrameError, FrameReader, Opcode};
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

const T0: i64 = 1_764_324_000_000;
/// A public event with devices A and B (and D).
const E1: &str = "11111111-1111-4111-8111-111111111111";
/// A private event with device C.
const E2: &str = "22222222-2222-4222-8222-222222222222";
/// A public event with device D only.
const E3: &str = "33333333-3333-4333-8333-333333333333";
/// No such event.
const E9: &str = "99999999-9999-4999-8999-999999999999";

const LAT: f64 = 54.6801;
const LON: f64 = 25.2801;

fn ev(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap()
}

fn config() -> LiveConfig {
    LiveConfig {
        max_message_bytes: 256,
        max_bad_messages: 3,
        max_subscriptions: 2,
        conflate_threshold_bytes: 1 << 20,
        backpressure_threshold_bytes: 4 << 20,
        ping_interval_ms: 1_000,
        write_timeout_ms: 5_000,
        // Out of the way of the transcripts below; the tests of the rate and of re-checks
        // set their own.
        max_messages_per_s: 1_000_000,
        visibility_recheck_ms: 1 << 40,
        faulty: FaultyThresholds {
            min_satellites: 3,
            max_future_ms: 60_000,
            min_timestamp: processor_core::UnixMillis(i64::MIN),
        },
        max_speed_kmh: 500.0,
        reanchor_gap_ms: 600_000,
        reanchor_after_fixes: 3,
        ..LiveConfig::default()
    }
}

/// Small thresholds: 300 bytes queued conflates, 1,000 buffered closes.
fn slow_config() -> LiveConfig {
    LiveConfig {
        conflate_threshold_bytes: 300,
        backpressure_threshold_bytes: 1_000,
        ..config()
    }
}

/// Pings out of the way (every minute), and a 5 s write timeout.
fn write_timeout_config() -> LiveConfig {
    LiveConfig {
        ping_interval_ms: 60_000,
        write_timeout_ms: 5_000,
        ..config()
    }
}

fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<Uuid>> {
    pairs
        .iter()
        .map(|(device, events)| (device.to_string(), events.iter().map(|e| ev(e)).collect()))
        .collect()
}

fn default_map() -> BTreeMap<String, BTreeSet<Uuid>> {
    map(&[("A", &[E1]), ("B", &[E1]), ("C", &[E2]), ("D", &[E1, E3])])
}

fn payload(device: &str, ts: i64, lat: f64, lon: f64, satellites: u8) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "device_id": device,
            "timestamp": T0 + ts,
            "latitude": lat,
            "longitude": lon,
            "satellites": satellites,
        }))
        .unwrap(),
    )
}

/// The `position` message the hub is expected to send.
fn pmsg(event: &str, device: &str, ts: i64, lat: f64, lon: f64) -> String {
    format!(
        r#"{{"type":"position","topic":"event:{event}","deviceId":"{device}","lat":{lat},"lon":{lon},"ts":{}}}"#,
        T0 + ts
    )
}

/// A position inside a snapshot.
fn spos(device: &str, ts: i64, lat: f64, lon: f64) -> String {
    format!(
        r#"{{"deviceId":"{device}","lat":{lat},"lon":{lon},"ts":{}}}"#,
        T0 + ts
    )
}

fn snapshot(event: &str, positions: &[String]) -> String {
    format!(
        r#"{{"type":"snapshot","topic":"event:{event}","positions":[{}]}}"#,
        positions.join(",")
    )
}

fn subscribed(event: &str) -> String {
    format!(r#"{{"type":"subscribed","topic":"event:{event}"}}"#)
}

fn unsubscribed(event: &str) -> String {
    format!(r#"{{"type":"unsubscribed","topic":"event:{event}"}}"#)
}

fn error(code: &str, topic: Option<&str>, message: &str) -> String {
    match topic {
        Some(t) => {
            format!(r#"{{"type":"error","code":"{code}","topic":"{t}","message":"{message}"}}"#)
        }
        None => format!(r#"{{"type":"error","code":"{code}","message":"{message}"}}"#),
    }
}

fn row(device: &str, ts: i64, lat: f64, lon: f64) -> WirePosition {
    WirePosition {
        device_id: device.into(),
        lat,
        lon,
        ts: T0 + ts,
        speed: 0.0,
        course: 0.0,
    }
}

fn send(conn: u64, text: &str) -> String {
    format!("c{conn} <- {text}")
}

/// The wire length of a text frame carrying `payload` bytes: the payload and a 2-, 4- or
/// 10-byte header (RFC 6455, section 5.2).
fn frame_len(payload: u64) -> u64 {
    payload
        + match payload {
            0..=125 => 2,
            126..=65_535 => 4,
            _ => 10,
        }
}

/// A server frame must be one whole, unmasked, minimally encoded frame: FIN set, no reserved
/// bits, its length field the payload's length, nothing after the payload.
fn assert_well_formed(frame: &Frame) {
    let bytes = frame.bytes();
    let payload = frame.payload();
    assert!(bytes.len() >= 2, "{frame:?}: no header");
    assert_eq!(bytes[0] & 0xf0, 0x80, "{frame:?}: FIN and no reserved bits");
    assert_eq!(
        bytes[1] & 0x80,
        0,
        "{frame:?}: a server frame is not masked"
    );
    let header = bytes.len() - payload.len();
    assert_eq!(
        header as u64,
        frame_len(payload.len() as u64) - payload.len() as u64,
        "{frame:?}: header length"
    );
    let declared = match bytes[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        127 => u64::from_be_bytes(bytes[2..10].try_into().unwrap()),
        n => u64::from(n),
    };
    assert_eq!(declared, payload.len() as u64, "{frame:?}: length field");
    assert_eq!(&bytes[header..], payload);
    assert_eq!(frame.len(), bytes.len());
    if frame.opcode().is_some_and(Opcode::is_control) {
        assert!(
            payload.len() <= 125,
            "{frame:?}: control frame over 125 bytes"
        );
    }
}

/// One line per command. Every `Send` must be a well-formed frame; a text frame must be
/// JSON, shown as its text; a ping is `ping`, a pong shows the payload it echoes.
fn render(command: &Command) -> String {
    match command {
        Command::Send { conn, frame } => {
            assert_well_formed(frame);
            match frame.opcode() {
                Some(Opcode::Text) => {
                    let text = std::str::from_utf8(frame.payload()).expect("UTF-8 frame");
                    let _: Value = serde_json::from_str(text).expect("JSON frame");
                    send(conn.0, text)
                }
                Some(Opcode::Ping) => {
                    assert!(
                        frame.payload().is_empty(),
                        "{frame:?}: a server ping is empty"
                    );
                    format!("c{} ping", conn.0)
                }
                Some(Opcode::Pong) => format!(
                    "c{} pong {}",
                    conn.0,
                    String::from_utf8_lossy(frame.payload())
                ),
                other => panic!("unexpected {other:?} frame: {frame:?}"),
            }
        }
        Command::Close { conn, code, reason } => format!("c{} close {code} {reason}", conn.0),
        Command::VerifyToken { conn, token } => format!("verify c{} {token}", conn.0),
        Command::LoadReplaySnapshot {
            request, conn, at, ..
        } => {
            format!(
                "replay snapshot r{} c{} at {}",
                request.0,
                conn.0,
                at.as_i64()
            )
        }
        Command::LoadReplayPage {
            request,
            conn,
            limit,
            ..
        } => format!("replay page r{} c{} {limit}", request.0, conn.0),
        Command::Authorize {
            request,
            conn,
            topic,
        } => format!("authorize r{} c{} {topic}", request.0, conn.0),
        Command::LoadSnapshot {
            request,
            conn,
            topic,
            devices,
            ..
        } => format!(
            "load r{} c{} {topic} [{}]",
            request.0,
            conn.0,
            devices.join(",")
        ),
    }
}

fn anon() -> Principal {
    Principal::Anonymous
}

fn failed() -> LookupFailed {
    LookupFailed("postgres away".into())
}

/// A masked client frame (RFC 6455, section 5.3), as a client's socket would carry it.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// The ingest and one hub shard, fed as the shell feeds them.
struct Fx {
    ingest: Ingest,
    hub: LiveHub,
    /// Milliseconds after T0.
    now: i64,
    next_entry: u64,
    log: Vec<Command>,
}

impl Fx {
    fn with(config: LiveConfig) -> Fx {
        let mut fx = Fx {
            ingest: Ingest::new(&config),
            hub: LiveHub::new(config, clocks(UnixMillis(T0))),
            now: 0,
            next_entry: 0,
            log: Vec::new(),
        };
        fx.device_map(1, default_map());
        fx
    }

    fn new() -> Fx {
        Fx::with(config())
    }

    fn now(&self) -> UnixMillis {
        UnixMillis(T0 + self.now)
    }

    fn at(&mut self, ms: i64) -> &mut Fx {
        self.now = ms;
        self
    }

    fn raw(&mut self) -> Vec<Command> {
        let commands: Vec<Command> = std::iter::from_fn(|| self.hub.poll_command()).collect();
        self.log.extend(commands.iter().cloned());
        commands
    }

    fn drain(&mut self) -> Vec<String> {
        self.raw().iter().map(render).collect()
    }

    /// Hands `input` to the hub at the current time, and returns what it commanded.
    fn input(&mut self, input: Input) -> Vec<String> {
        self.hub.handle(clocks(self.now()), input);
        self.drain()
    }

    /// A new version of the device map, for the ingest and the hub alike.
    fn device_map(&mut self, version: u64, by_device: BTreeMap<String, BTreeSet<Uuid>>) {
        let map = Arc::new(DeviceMap::new(version, by_device));
        self.ingest
            .handle(self.now(), IngestInput::DeviceMap(Arc::clone(&map)));
        self.hub.handle(clocks(self.now()), Input::DeviceMap(map));
    }

    fn connect(&mut self, conn: u64, principal: Principal) -> Vec<String> {
        self.input(Input::Connected {
            conn: ConnId(conn),
            principal,
            expires_at: None,
        })
    }

    fn frame(&mut self, conn: u64, frame: Result<ClientFrame, FrameError>) -> Vec<String> {
        self.input(Input::Frame {
            conn: ConnId(conn),
            frame,
        })
    }

    /// What a client's socket delivered, read by a [`FrameReader`] as the shell reads it.
    fn socket(&mut self, conn: u64, bytes: &[u8]) -> Vec<String> {
        let mut reader = FrameReader::new(64 * 1024);
        reader.push(bytes);
        let mut lines = Vec::new();
        while let Some(frame) = reader.next() {
            lines.extend(self.frame(conn, frame));
        }
        lines
    }

    fn text(&mut self, conn: u64, text: &str) -> Vec<String> {
        self.input(live::text(
            ConnId(conn),
            Bytes::copy_from_slice(text.as_bytes()),
        ))
    }

    fn pong(&mut self, conn: u64) -> Vec<String> {
        self.frame(conn, Ok(ClientFrame::Pong))
    }

    fn closed(&mut self, conn: u64) -> Vec<String> {
        self.input(Input::Closed { conn: ConnId(conn) })
    }

    fn sub_text(&mut self, conn: u64, event: &str) -> Vec<Command> {
        let text = format!(r#"{{"type":"subscribe","topic":"event:{event}"}}"#);
        self.hub.handle(
            clocks(self.now()),
            live::text(ConnId(conn), Bytes::from(text)),
        );
        self.raw()
    }

    fn unsub(&mut self, conn: u64, event: &str) -> Vec<String> {
        self.text(
            conn,
            &format!(r#"{{"type":"unsubscribe","topic":"event:{event}"}}"#),
        )
    }

    fn visibility(
        &mut self,
        request: RequestId,
        visibility: Result<Visibility, LookupFailed>,
    ) -> Vec<String> {
        self.input(Input::Visibility {
            request,
            visibility,
        })
    }

    fn snapshot(
        &mut self,
        request: RequestId,
        rows: Result<Vec<WirePosition>, LookupFailed>,
    ) -> Vec<String> {
        self.input(Input::Snapshot { request, rows })
    }

    /// Subscribe and answer the authorization; returns the load request, if one went out.
    fn authorize(
        &mut self,
        conn: u64,
        event: &str,
        visibility: Visibility,
    ) -> (Vec<String>, Option<RequestId>) {
        let commands = self.sub_text(conn, event);
        let request = match commands.as_slice() {
            [Command::Authorize { request, .. }] => *request,
            other => panic!("expected one Authorize, got {other:?}"),
        };
        self.hub.handle(
            clocks(self.now()),
            Input::Visibility {
                request,
                visibility: Ok(visibility),
            },
        );
        let commands = self.raw();
        let load = commands.iter().find_map(|c| match c {
            Command::LoadSnapshot { request, .. } => Some(*request),
            _ => None,
        });
        (commands.iter().map(render).collect(), load)
    }

    /// Subscribe to a public event and answer its snapshot with `rows`.
    fn subscribe(&mut self, conn: u64, event: &str, rows: Vec<WirePosition>) -> Vec<String> {
        let (mut lines, load) = self.authorize(conn, event, Visibility::Public);
        let load = load.expect("a snapshot load");
        lines.extend(self.snapshot(load, Ok(rows)));
        lines
    }

    /// One stream read: judged by the ingest, its batch (if any) handed to the hub.
    fn entries(&mut self, payloads: Vec<Option<Bytes>>) -> Vec<String> {
        let entries = payloads
            .into_iter()
            .map(|p| {
                self.next_entry += 1;
                (EntryId::new(self.next_entry, 0), p)
            })
            .collect();
        self.ingest
            .handle(self.now(), IngestInput::Entries(entries));
        while let Some(batch) = self.ingest.poll_batch() {
            self.hub.handle(clocks(self.now()), Input::Batch(batch));
        }
        self.drain()
    }

    /// A good fix of `device` at `ts` ms after T0, at (LAT, LON).
    fn pos(&mut self, device: &str, ts: i64) -> Vec<String> {
        self.pos_at(device, ts, LAT, LON)
    }

    /// A fix taken `ts` ms after T0 (the clock moves there if it was earlier).
    fn pos_at(&mut self, device: &str, ts: i64, lat: f64, lon: f64) -> Vec<String> {
        self.now = self.now.max(ts);
        self.entries(vec![Some(payload(device, ts, lat, lon, 9))])
    }

    /// A write attempt on `conn`'s socket took `bytes`.
    fn drained(&mut self, conn: u64, bytes: u64) -> Vec<String> {
        self.input(Input::Written {
            conn: ConnId(conn),
            bytes,
        })
    }

    /// Reports everything queued for `conn` as written.
    fn drain_all(&mut self, conn: u64) -> Vec<String> {
        let queued = self.hub.queued_bytes(ConnId(conn)).unwrap_or(0);
        self.drained(conn, queued)
    }

    fn timeout(&mut self, at: i64) -> Vec<String> {
        self.now = at;
        self.input(Input::Timeout)
    }

    fn poll_timeout(&self) -> Option<i64> {
        self.hub
            .poll_timeout()
            .map(wall_of)
            .map(|t| t.as_i64() - T0)
    }

    fn stats(&self) -> LiveStats {
        self.hub.stats()
    }

    fn ingest_stats(&self) -> IngestStats {
        self.ingest.stats()
    }

    /// Every delivery is sent, conflated, dropped or waiting.
    fn assert_accounted(&self) {
        let s = self.stats();
        assert_eq!(
            s.position_deliveries,
            s.fanout_messages + s.conflated_messages + s.dropped_messages + self.hub.waiting(),
            "{s:?}"
        );
    }
}

fn no_commands() -> Vec<String> {
    Vec::new()
}

// ---------------------------------------------------------------------------------------
// Subscribing and the snapshot

#[test]
fn subscribe_to_a_public_event_gets_subscribed_then_one_snapshot_then_live() {
    let mut fx = Fx::new();
    assert_eq!(fx.connect(1, anon()), no_commands());
    // A and B were accepted live before anyone subscribed; C belongs to another event.
    assert_eq!(fx.pos("A", 1_000), no_commands());
    assert_eq!(fx.pos("C", 1_000), no_commands());
    fx.at(2_000);

    let (lines, load) = fx.authorize(1, E1, Visibility::Public);
    let load = load.unwrap();
    assert_eq!(
        lines,
        vec![
            send(1, &subscribed(E1)),
            format!("load r1 c1 event:{E1} [A,B,D]"),
        ]
    );
    assert_eq!(
        fx.snapshot(
            load,
            Ok(vec![row("B", 500, 54.1, 25.1), row("B", 400, 54.2, 25.2)]),
        ),
        vec![send(
            1,
            &snapshot(
                E1,
                &[spos("A", 1_000, LAT, LON), spos("B", 500, 54.1, 25.1)]
            )
        )]
    );
    assert_eq!(
        fx.pos("A", 3_000),
        vec![send(1, &pmsg(E1, "A", 3_000, LAT, LON))]
    );
    let s = fx.stats();
    assert_eq!((s.connections, s.subscriptions, s.snapshots), (1, 1, 1));
    assert_eq!(s.fanout_messages, 1);
    fx.assert_accounted();
}

#[test]
fn the_authorize_command_names_the_topic_and_connection() {
    let mut fx = Fx::new();
    fx.connect(7, anon());
    let lines: Vec<String> = fx.sub_text(7, E2).iter().map(render).collect();
    assert_eq!(lines, vec![format!("authorize r0 c7 event:{E2}")]);
}

#[test]
fn a_position_racing_the_snapshot_is_neither_lost_nor_sent_before_it() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.pos("A", 1_000);
    let (_, load) = fx.authorize(1, E1, Visibility::Public);
    // While the snapshot loads, A moves twice and B once: nothing is sent yet.
    assert_eq!(fx.pos_at("A", 2_000, 54.6802, 25.2802), no_commands());
    assert_eq!(fx.pos_at("A", 3_000, 54.6803, 25.2803), no_commands());
    assert_eq!(fx.pos("B", 2_500), no_commands());
    // Postgres answers with what it had stored when the query ran: A at 1 s, B older.
    let lines = fx.snapshot(
        load.unwrap(),
        Ok(vec![
            row("A", 1_000, LAT, LON),
            row("B", 100, 54.0001, 25.0001),
        ]),
    );
    // The snapshot carries the newest of all: nothing held is newer, so nothing follows.
    assert_eq!(
        lines,
        vec![send(
            1,
            &snapshot(
                E1,
                &[
                    spos("A", 3_000, 54.6803, 25.2803),
                    spos("B", 2_500, LAT, LON)
                ]
            )
        )]
    );
    assert_eq!(
        fx.pos("B", 4_000),
        vec![send(1, &pmsg(E1, "B", 4_000, LAT, LON))]
    );
    let s = fx.stats();
    // Three held deliveries: A's first replaced by its second (conflated), two covered by
    // the snapshot (dropped).
    assert_eq!(s.conflated_messages, 1);
    assert_eq!(s.dropped_messages, 2);
    fx.assert_accounted();
}

#[test]
fn a_snapshot_ahead_of_the_live_path_is_never_followed_by_an_older_position() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.pos("A", 1_000);
    // Postgres already stored A at 5 s; this instance has not read it yet.
    let lines = fx.subscribe(1, E1, vec![row("A", 5_000, LAT, LON)]);
    assert_eq!(
        lines.last().unwrap(),
        &send(1, &snapshot(E1, &[spos("A", 5_000, LAT, LON)]))
    );
    // The live path catches up: 3 s and 5 s are not newer than what the client has.
    assert_eq!(fx.pos("A", 3_000), no_commands());
    assert_eq!(fx.pos("A", 5_000), no_commands());
    assert_eq!(
        fx.pos("A", 6_000),
        vec![send(1, &pmsg(E1, "A", 6_000, LAT, LON))]
    );
    assert_eq!(
        fx.pos("A", 7_000),
        vec![send(1, &pmsg(E1, "A", 7_000, LAT, LON))]
    );
    fx.assert_accounted();
}

#[test]
fn snapshot_rows_of_devices_outside_the_event_are_ignored() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let lines = fx.subscribe(
        1,
        E3,
        vec![row("A", 1_000, LAT, LON), row("D", 900, 54.5, 25.5)],
    );
    assert_eq!(
        lines,
        vec![
            send(1, &subscribed(E3)),
            format!("load r1 c1 event:{E3} [D]"),
            send(1, &snapshot(E3, &[spos("D", 900, 54.5, 25.5)])),
        ]
    );
}

#[test]
fn a_failed_snapshot_is_an_error_then_unsubscribed_and_nothing_follows() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let (_, load) = fx.authorize(1, E1, Visibility::Public);
    fx.pos("A", 1_000);
    assert_eq!(
        fx.snapshot(load.unwrap(), Err(failed())),
        vec![
            send(
                1,
                &error(
                    "limit_exceeded",
                    Some(&format!("event:{E1}")),
                    "could not load the snapshot now; the subscription was dropped, subscribe again later"
                )
            ),
            send(1, &unsubscribed(E1)),
        ]
    );
    assert_eq!(fx.pos("A", 2_000), no_commands());
    // A late answer to the failed request is ignored.
    assert_eq!(fx.snapshot(load.unwrap(), Ok(vec![])), no_commands());
    let s = fx.stats();
    assert_eq!(
        (s.subscriptions, s.lookup_failures, s.dropped_messages),
        (0, 1, 1)
    );
    fx.assert_accounted();
    // Subscribing again works.
    let lines = fx.subscribe(1, E1, vec![]);
    assert_eq!(
        lines.last().unwrap(),
        &send(1, &snapshot(E1, &[spos("A", 2_000, LAT, LON)]))
    );
}

#[test]
fn a_failed_authorization_lookup_is_an_error_without_subscription() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let commands = fx.sub_text(1, E1);
    let Command::Authorize { request, .. } = commands[0] else {
        panic!("{commands:?}")
    };
    assert_eq!(
        fx.visibility(request, Err(failed())),
        vec![send(
            1,
            &error(
                "limit_exceeded",
                Some(&format!("event:{E1}")),
                "could not check access to this topic now; subscribe again later"
            )
        )]
    );
    assert_eq!(
        (fx.stats().subscriptions, fx.stats().lookup_failures),
        (0, 1)
    );
    assert_eq!(fx.pos("A", 1_000), no_commands());
}

#[test]
fn subscribing_again_starts_over_with_a_fresh_snapshot() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.pos("A", 1_000);
    let lines = fx.subscribe(1, E1, vec![]);
    assert_eq!(
        lines,
        vec![
            send(1, &subscribed(E1)),
            format!("load r3 c1 event:{E1} [A,B,D]"),
            send(1, &snapshot(E1, &[spos("A", 1_000, LAT, LON)])),
        ]
    );
    assert_eq!(fx.stats().subscriptions, 1);
}

#[test]
fn a_position_while_authorizing_is_not_sent() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let commands = fx.sub_text(1, E1);
    let Command::Authorize { request, .. } = commands[0] else {
        panic!("{commands:?}")
    };
    assert_eq!(fx.pos("A", 1_000), no_commands());
    let lines = fx.visibility(request, Ok(Visibility::Public));
    assert_eq!(lines[0], send(1, &subscribed(E1)));
    assert_eq!(fx.stats().position_deliveries, 0);
}

// ---------------------------------------------------------------------------------------
// Per-device rules

#[test]
fn ts_never_goes_backwards_per_device_even_unsubscribed() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    // Nobody listens yet, but 5 s is accepted and becomes A's anchor.
    fx.pos("A", 5_000);
    fx.subscribe(1, E1, vec![]);
    assert_eq!(fx.pos("A", 4_000), no_commands());
    assert_eq!(fx.pos("A", 5_000), no_commands());
    assert_eq!(
        fx.pos("A", 6_000),
        vec![send(1, &pmsg(E1, "A", 6_000, LAT, LON))]
    );
    // A batch out of order: only what is newer than the newest accepted goes out.
    let lines = fx.entries(vec![
        Some(payload("A", 8_000, LAT, LON, 9)),
        Some(payload("A", 7_000, LAT, LON, 9)),
        Some(payload("B", 1_000, LAT, LON, 9)),
        Some(payload("A", 8_000, LAT, LON, 9)),
    ]);
    assert_eq!(
        lines,
        vec![
            send(1, &pmsg(E1, "A", 8_000, LAT, LON)),
            send(1, &pmsg(E1, "B", 1_000, LAT, LON)),
        ]
    );
    assert_eq!(fx.ingest_stats().stale_dropped, 4);
}

#[test]
fn faulty_positions_are_never_sent_nor_in_a_snapshot() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.at(10_000);
    let lines = fx.entries(vec![
        Some(payload("A", 1_000, 0.0, 0.0, 9)),
        Some(payload("A", 2_000, LAT, LON, 2)),
        Some(payload("A", 10_000 + 60_001, LAT, LON, 9)),
    ]);
    assert_eq!(lines, no_commands());
    // Exactly at the future limit is fine.
    assert_eq!(
        fx.entries(vec![Some(payload("A", 70_000, LAT, LON, 9))]),
        vec![send(1, &pmsg(E1, "A", 70_000, LAT, LON))]
    );
    assert_eq!(fx.ingest_stats().faulty_dropped, 3);
    // Faulty fixes did not become anchors: B's snapshot entry is its good one.
    fx.entries(vec![Some(payload("B", 20_000, 0.0, 0.0, 9))]);
    fx.pos("B", 15_000);
    fx.connect(2, anon());
    let lines = fx.subscribe(2, E1, vec![]);
    assert_eq!(
        lines.last().unwrap(),
        &send(
            2,
            &snapshot(
                E1,
                &[spos("A", 70_000, LAT, LON), spos("B", 15_000, LAT, LON)]
            )
        )
    );
}

#[test]
fn a_jump_faster_than_the_limit_is_dropped() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.pos("A", 0);
    // One degree of latitude (111 km) in a minute: 6,700 km/h.
    assert_eq!(fx.pos_at("A", 60_000, LAT + 1.0, LON), no_commands());
    // Back where it was: fine.
    assert_eq!(
        fx.pos_at("A", 61_000, 54.6802, LON),
        vec![send(1, &pmsg(E1, "A", 61_000, 54.6802, LON))]
    );
    // 111 km in 15 minutes (445 km/h) is within the 500 km/h limit.
    assert_eq!(
        fx.pos_at("A", 961_000, 55.6802, LON),
        vec![send(1, &pmsg(E1, "A", 961_000, 55.6802, LON))]
    );
    let s = fx.ingest_stats();
    assert_eq!((s.jump_dropped, s.reanchored), (1, 0));
}

#[test]
fn agreeing_too_fast_fixes_re_anchor_the_device() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    // A wrong anchor: far away from where the device really is.
    assert_eq!(fx.pos_at("A", 0, 10.5, 10.5).len(), 1);
    // The device reports its true track; each fix is too fast from the anchor, but they
    // agree with each other. The third is accepted and the track goes on from there.
    assert_eq!(fx.pos_at("A", 1_000, LAT, LON), no_commands());
    assert_eq!(fx.pos_at("A", 2_000, 54.6802, LON), no_commands());
    assert_eq!(
        fx.pos_at("A", 3_000, 54.6803, LON),
        vec![send(1, &pmsg(E1, "A", 3_000, 54.6803, LON))]
    );
    assert_eq!(
        fx.pos_at("A", 4_000, 54.6804, LON),
        vec![send(1, &pmsg(E1, "A", 4_000, 54.6804, LON))]
    );
    let s = fx.ingest_stats();
    assert_eq!((s.jump_dropped, s.reanchored, s.accepted), (2, 1, 3));
}

#[test]
fn isolated_glitches_do_not_re_anchor() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.pos("A", 0);
    // Glitches far away, each far from the one before: they never agree.
    for (i, (lat, lon)) in [(10.5, 10.5), (-20.5, 30.5), (40.5, -60.5), (-5.5, 100.5)]
        .into_iter()
        .enumerate()
    {
        let ts = 1_000 * (i as i64 + 1);
        assert_eq!(fx.pos_at("A", ts, lat, lon), no_commands(), "glitch {i}");
    }
    assert_eq!(
        fx.pos_at("A", 5_000, 54.6802, LON),
        vec![send(1, &pmsg(E1, "A", 5_000, 54.6802, LON))]
    );
    let s = fx.ingest_stats();
    assert_eq!((s.jump_dropped, s.reanchored), (4, 0));
}

#[test]
fn a_too_fast_fix_after_a_long_gap_re_anchors() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.pos_at("A", 0, 10.5, 10.5);
    // 5,000 km in 10 minutes: too fast, gap not over 10 minutes.
    assert_eq!(fx.pos_at("A", 600_000, LAT, LON), no_commands());
    fx.at(600_001);
    assert_eq!(
        fx.pos_at("A", 600_001, 54.6802, LON),
        vec![send(1, &pmsg(E1, "A", 600_001, 54.6802, LON))]
    );
    let s = fx.ingest_stats();
    assert_eq!((s.jump_dropped, s.reanchored), (1, 1));
}

#[test]
fn re_anchoring_can_be_disabled() {
    let mut fx = Fx::with(LiveConfig {
        reanchor_gap_ms: u64::MAX,
        reanchor_after_fixes: 0,
        ..config()
    });
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.pos_at("A", 0, 10.5, 10.5);
    for i in 1..10 {
        assert_eq!(
            fx.pos_at("A", i * 1_000, LAT + i as f64 * 1e-4, LON),
            no_commands()
        );
    }
    assert_eq!(fx.ingest_stats().jump_dropped, 9);
}

// ---------------------------------------------------------------------------------------
// Authorization

/// What a subscription attempt of `principal` to `event` with `visibility` is answered.
fn attempt(principal: Principal, event: &str, visibility: Visibility) -> Vec<String> {
    let mut fx = Fx::new();
    fx.connect(1, principal);
    fx.authorize(1, event, visibility).0
}

fn granted(event: &str, devices: &str) -> Vec<String> {
    vec![
        send(1, &subscribed(event)),
        format!("load r1 c1 event:{event} [{devices}]"),
    ]
}

fn forbidden(event: &str) -> Vec<String> {
    vec![send(
        1,
        &error(
            "forbidden",
            Some(&format!("event:{event}")),
            FORBIDDEN_MESSAGE,
        ),
    )]
}

#[test]
fn authorization_matrix() {
    let claims =
        |events: &[&str], role: Option<&str>| Principal::from_claims(events.iter().copied(), role);
    let upper = E2.to_uppercase();
    let cases: Vec<(&str, Principal, &str, Visibility, Vec<String>)> = vec![
        (
            "anonymous, public",
            anon(),
            E1,
            Visibility::Public,
            granted(E1, "A,B,D"),
        ),
        (
            "anonymous, private",
            anon(),
            E2,
            Visibility::Private,
            forbidden(E2),
        ),
        (
            "anonymous, unknown",
            anon(),
            E9,
            Visibility::Unknown,
            forbidden(E9),
        ),
        (
            "no claims, public",
            claims(&[], None),
            E1,
            Visibility::Public,
            granted(E1, "A,B,D"),
        ),
        (
            "no claims, private",
            claims(&[], None),
            E2,
            Visibility::Private,
            forbidden(E2),
        ),
        (
            "claim, private",
            claims(&[E2], None),
            E2,
            Visibility::Private,
            granted(E2, "C"),
        ),
        (
            "upper-case claim",
            claims(&[&upper], None),
            E2,
            Visibility::Private,
            granted(E2, "C"),
        ),
        (
            "other claim",
            claims(&[E3], None),
            E2,
            Visibility::Private,
            forbidden(E2),
        ),
        (
            "claim, unknown",
            claims(&[E9], None),
            E9,
            Visibility::Unknown,
            forbidden(E9),
        ),
        (
            "admin, private",
            claims(&[], Some("admin")),
            E2,
            Visibility::Private,
            granted(E2, "C"),
        ),
        (
            "admin, unknown",
            claims(&[], Some("admin")),
            E9,
            Visibility::Unknown,
            forbidden(E9),
        ),
        (
            "other role",
            claims(&[], Some("viewer")),
            E2,
            Visibility::Private,
            forbidden(E2),
        ),
        (
            "garbage claim",
            claims(&["not-a-uuid"], None),
            E2,
            Visibility::Private,
            forbidden(E2),
        ),
    ];
    for (name, principal, event, visibility, expected) in cases {
        assert_eq!(attempt(principal, event, visibility), expected, "{name}");
    }
}

#[test]
fn forbidden_and_unknown_differ_only_in_the_topic() {
    let private = attempt(anon(), E2, Visibility::Private);
    let unknown = attempt(anon(), E9, Visibility::Unknown);
    assert_eq!(private[0].replace(E2, E9), unknown[0]);
}

#[test]
fn visibility_from_the_column() {
    assert_eq!(Visibility::from_column(Some("public")), Visibility::Public);
    assert_eq!(
        Visibility::from_column(Some("private")),
        Visibility::Private
    );
    assert_eq!(Visibility::from_column(Some("Public")), Visibility::Unknown);
    assert_eq!(Visibility::from_column(None), Visibility::Unknown);
}

#[test]
fn a_forbidden_topic_does_not_count_against_the_limit() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.authorize(1, E2, Visibility::Private);
    fx.authorize(1, E9, Visibility::Unknown);
    let (lines, _) = fx.authorize(1, E1, Visibility::Public);
    assert_eq!(lines[0], send(1, &subscribed(E1)));
}

// ---------------------------------------------------------------------------------------
// Bad input and limits

#[test]
fn bad_requests_are_answered_and_the_connection_stays_usable() {
    let mut fx = Fx::with(LiveConfig {
        max_bad_messages: 10,
        ..config()
    });
    fx.connect(1, anon());
    let topic_error =
        |reason: &str, topic: &str| send(1, &error("bad_request", Some(topic), reason));
    let plain_error = |reason: &str| send(1, &error("bad_request", None, reason));
    assert_eq!(
        fx.text(1, "{not json"),
        vec![plain_error("message is not valid JSON")]
    );
    assert_eq!(
        fx.text(1, "[1,2]"),
        vec![plain_error("message must be a JSON object")]
    );
    assert_eq!(
        fx.text(1, r#"{"type":"dance","topic":"event:x"}"#),
        vec![topic_error("unknown message type", "event:x")]
    );
    assert_eq!(
        fx.text(1, r#"{"type":"subscribe","topic":"room:1"}"#),
        vec![topic_error("topic must be event:<uuid>", "room:1")]
    );
    assert_eq!(
        fx.text(1, r#"{"type":"subscribe"}"#),
        vec![plain_error("message has no string field `topic`")]
    );
    let long = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(256));
    assert_eq!(
        fx.text(1, &long),
        vec![plain_error("message is larger than the server accepts")]
    );
    assert_eq!(
        fx.frame(1, Ok(ClientFrame::Binary)),
        vec![plain_error("binary frames are not accepted")]
    );
    // Still usable.
    assert_eq!(
        fx.text(1, r#"{"type":"ping"}"#),
        vec![send(1, r#"{"type":"pong"}"#)]
    );
    assert_eq!(fx.subscribe(1, E1, vec![])[0], send(1, &subscribed(E1)));
}

#[test]
fn a_message_at_the_size_limit_is_parsed() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let base = r#"{"type":"ping","pad":""}"#;
    let text = format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(256 - base.len())
    );
    assert_eq!(text.len(), 256);
    assert_eq!(fx.text(1, &text), vec![send(1, r#"{"type":"pong"}"#)]);
}

#[test]
fn too_many_bad_requests_close_with_1008_and_nothing_follows() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    let bad = send(1, &error("bad_request", None, "message is not valid JSON"));
    assert_eq!(fx.text(1, "x"), vec![bad.clone()]);
    assert_eq!(
        fx.text(1, r#"{"type":"ping"}"#),
        vec![send(1, r#"{"type":"pong"}"#)]
    );
    assert_eq!(fx.text(1, "x"), vec![bad.clone()]);
    assert_eq!(
        fx.text(1, "x"),
        vec![bad, "c1 close 1008 too many bad requests".to_string()]
    );
    assert!(!fx.hub.is_open(ConnId(1)));
    assert_eq!(fx.text(1, r#"{"type":"ping"}"#), no_commands());
    assert_eq!(fx.pos("A", 1_000), no_commands());
    assert_eq!(fx.timeout(5_000), no_commands());
    let s = fx.stats();
    assert_eq!((s.connections, s.subscriptions), (0, 0));
}

#[test]
fn a_message_over_64_kib_closes_with_1009() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    assert_eq!(
        fx.frame(1, Err(FrameError::TooLarge)),
        vec!["c1 close 1009 message too big".to_string()]
    );
    assert_eq!(fx.text(1, r#"{"type":"ping"}"#), no_commands());
    // As the shell's reader reports it: the header alone of a frame over 64 KiB.
    fx.connect(2, anon());
    let header = &client_frame(true, 0x1, &vec![b'x'; 64 * 1024 + 1])[..14];
    assert_eq!(
        fx.socket(2, header),
        vec!["c2 close 1009 message too big".to_string()]
    );
    // Too big is not a protocol error.
    assert_eq!(fx.stats().protocol_errors, 0);
    assert_eq!(fx.stats().connections, 0);
}

#[test]
fn more_topics_than_the_limit_get_limit_exceeded() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    // A topic still being authorized counts.
    let pending = fx.sub_text(1, E2);
    assert_eq!(pending.len(), 1);
    let lines: Vec<String> = fx.sub_text(1, E3).iter().map(render).collect();
    assert_eq!(
        lines,
        vec![send(
            1,
            &error(
                "limit_exceeded",
                Some(&format!("event:{E3}")),
                "at most 2 topics per connection"
            )
        )]
    );
    // Subscribing again to a topic held is not one more.
    assert_eq!(fx.subscribe(1, E1, vec![])[0], send(1, &subscribed(E1)));
    // Unsubscribing frees a place.
    assert_eq!(fx.unsub(1, E1), vec![send(1, &unsubscribed(E1))]);
    assert_eq!(fx.subscribe(1, E3, vec![])[0], send(1, &subscribed(E3)));
}

#[test]
fn unsubscribe_of_a_topic_not_subscribed_is_answered_all_the_same() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    assert_eq!(fx.unsub(1, E9), vec![send(1, &unsubscribed(E9))]);
    fx.subscribe(1, E1, vec![]);
    assert_eq!(fx.unsub(1, E1), vec![send(1, &unsubscribed(E1))]);
    assert_eq!(fx.unsub(1, E1), vec![send(1, &unsubscribed(E1))]);
    assert_eq!(fx.pos("A", 1_000), no_commands());
}

#[test]
fn unsubscribing_while_authorizing_or_loading_ignores_the_late_answer() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let commands = fx.sub_text(1, E1);
    let Command::Authorize { request, .. } = commands[0] else {
        panic!("{commands:?}")
    };
    fx.unsub(1, E1);
    assert_eq!(
        fx.visibility(request, Ok(Visibility::Public)),
        no_commands()
    );

    let (_, load) = fx.authorize(1, E1, Visibility::Public);
    fx.pos("A", 1_000);
    assert_eq!(fx.unsub(1, E1), vec![send(1, &unsubscribed(E1))]);
    assert_eq!(fx.snapshot(load.unwrap(), Ok(vec![])), no_commands());
    assert_eq!(fx.stats().dropped_messages, 1);
    fx.assert_accounted();
}

// ---------------------------------------------------------------------------------------
// Stream input and the device map

#[test]
fn decode_errors_and_orphans_are_counted() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    let lines = fx.entries(vec![
        None,
        Some(Bytes::from_static(b"{not json")),
        Some(Bytes::from_static(br#"{"device_id":"A"}"#)),
        Some(payload("ORPHAN", 1_000, LAT, LON, 9)),
        // Faulty too, but an orphan is counted as one and judged no further.
        Some(payload("ORPHAN", 2_000, 0.0, 0.0, 9)),
        Some(payload("A", 500, 0.0, 0.0, 9)),
        Some(payload("A", 1_000, LAT, LON, 9)),
    ]);
    assert_eq!(lines, vec![send(1, &pmsg(E1, "A", 1_000, LAT, LON))]);
    let s = fx.ingest_stats();
    assert_eq!(s.broadcast_records, 7);
    assert_eq!(s.decode_errors, 3);
    assert_eq!(s.orphan_records, 2);
    assert_eq!(s.faulty_dropped, 1);
    assert_eq!(s.accepted, 1);
    assert_eq!((s.stale_dropped, s.jump_dropped, s.reanchored), (0, 0, 0));
    // Every record read is counted once.
    assert_eq!(
        s.broadcast_records,
        s.decode_errors + s.orphan_records + s.faulty_dropped + s.accepted
    );
}

#[test]
fn before_any_map_every_device_is_an_orphan() {
    let mut ingest = Ingest::new(&config());
    let hub = LiveHub::new(config(), clocks(UnixMillis(T0)));
    ingest.handle(
        UnixMillis(T0),
        IngestInput::Entries(vec![(
            EntryId::new(1, 0),
            Some(payload("A", 0, LAT, LON, 9)),
        )]),
    );
    assert_eq!(ingest.stats().orphan_records, 1);
    assert_eq!(ingest.stats().accepted, 0);
    // A read with nothing for any event makes no batch.
    assert!(ingest.poll_batch().is_none());
    assert_eq!(ingest.device_map_version(), None);
    assert_eq!(hub.device_map_version(), None);
}

#[test]
fn a_device_added_to_an_event_by_a_new_map_version_is_fanned_out() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    assert_eq!(fx.pos("NEW", 1_000), no_commands());
    assert_eq!(fx.ingest_stats().orphan_records, 1);
    let mut next = default_map();
    next.insert("NEW".into(), [ev(E1)].into());
    fx.device_map(2, next);
    // The orphan's fix left no anchor: an older one is the device's first fix, and is
    // fanned out.
    assert_eq!(
        fx.pos("NEW", 500),
        vec![send(1, &pmsg(E1, "NEW", 500, LAT, LON))]
    );
    assert_eq!(
        fx.pos("NEW", 2_000),
        vec![send(1, &pmsg(E1, "NEW", 2_000, LAT, LON))]
    );
    // An older version arriving late is ignored; the whole map is replaced by a newer one.
    fx.device_map(1, default_map());
    assert_eq!(fx.pos("NEW", 3_000).len(), 1);
    fx.device_map(3, map(&[("NEW", &[E1])]));
    assert_eq!(fx.hub.device_map_version(), Some(3));
    assert_eq!(fx.ingest.device_map_version(), Some(3));
    assert_eq!(fx.pos("A", 3_000), no_commands());
    let s = fx.ingest_stats();
    assert_eq!((s.orphan_records, s.stale_dropped), (2, 0));
}

#[test]
fn an_orphan_keeps_no_state_and_is_judged_fresh_once_mapped() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    // While an orphan, X sends a good fix far away, then a faulty one, then a jump back:
    // all three are orphans and nothing else.
    fx.at(10_000);
    let lines = fx.entries(vec![
        Some(payload("X", 9_000, 10.5, 10.5, 9)),
        Some(payload("X", 9_100, LAT, LON, 1)),
        Some(payload("X", 9_200, LAT, LON, 9)),
    ]);
    assert_eq!(lines, no_commands());
    let s = fx.ingest_stats();
    assert_eq!(s.orphan_records, 3);
    assert_eq!(
        (
            s.faulty_dropped,
            s.stale_dropped,
            s.jump_dropped,
            s.accepted
        ),
        (0, 0, 0, 0)
    );
    // Mapped, X goes through the rules as a device never seen: a fix older than its orphan
    // fixes, and thousands of km from the first, is its first anchor.
    let mut next = default_map();
    next.insert("X".into(), [ev(E1)].into());
    fx.device_map(2, next);
    assert_eq!(
        fx.entries(vec![Some(payload("X", 1_000, LAT, LON, 9))]),
        vec![send(1, &pmsg(E1, "X", 1_000, LAT, LON))]
    );
    // From there on the rules hold as for any device: stale, then a jump, are dropped.
    assert_eq!(
        fx.entries(vec![
            Some(payload("X", 1_000, LAT, LON, 9)),
            Some(payload("X", 2_000, 10.5, 10.5, 9)),
        ]),
        no_commands()
    );
    let s = fx.ingest_stats();
    assert_eq!(
        (
            s.orphan_records,
            s.stale_dropped,
            s.jump_dropped,
            s.accepted
        ),
        (3, 1, 1, 1)
    );
    // Nor is an orphan's fix kept for the snapshot: a new subscriber sees X's mapped fix.
    fx.connect(2, anon());
    assert_eq!(
        fx.subscribe(2, E1, vec![]).last().unwrap(),
        &send(2, &snapshot(E1, &[spos("X", 1_000, LAT, LON)]))
    );
}

#[test]
fn a_device_in_two_events_goes_to_both_topics_encoded_once_per_topic() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.connect(2, anon());
    fx.subscribe(1, E1, vec![]);
    fx.subscribe(2, E1, vec![]);
    fx.subscribe(2, E3, vec![]);
    let before = fx.log.len();
    fx.entries(vec![Some(payload("D", 1_000, LAT, LON, 9))]);
    let commands = fx.log[before..].to_vec();
    assert_eq!(
        commands.iter().map(render).collect::<Vec<_>>(),
        vec![
            send(1, &pmsg(E1, "D", 1_000, LAT, LON)),
            send(2, &pmsg(E1, "D", 1_000, LAT, LON)),
            send(2, &pmsg(E3, "D", 1_000, LAT, LON)),
        ]
    );
    let ptr = |c: &Command| match c {
        Command::Send { frame, .. } => frame.bytes().as_ptr(),
        _ => unreachable!(),
    };
    assert_eq!(
        ptr(&commands[0]),
        ptr(&commands[1]),
        "one encoding per topic"
    );
    assert_ne!(ptr(&commands[1]), ptr(&commands[2]));
    assert_eq!(fx.stats().fanout_messages, 3);
}

// ---------------------------------------------------------------------------------------
// Slow clients

/// Wire length of the frame of a position message of `device` in E1 at (LAT, LON) and a
/// 13-digit ts: what the byte thresholds count.
fn pmsg_len(device: &str) -> u64 {
    frame_len(pmsg(E1, device, 0, LAT, LON).len() as u64)
}

#[test]
fn a_slow_client_is_conflated_then_caught_up_in_order() {
    let mut fx = Fx::with(slow_config());
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.drain_all(1);
    let len = pmsg_len("A");
    // A 134-byte payload and a 4-byte header (payloads from 126 bytes have a 16-bit length).
    assert_eq!(len, 138);
    // 300 bytes allowed: three messages go out (414 queued), the rest is parked.
    for ts in 1..=3 {
        assert_eq!(fx.pos("A", ts * 1_000).len(), 1);
    }
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(3 * len));
    assert_eq!(fx.pos("A", 4_000), no_commands());
    assert_eq!(fx.pos("B", 4_500), no_commands());
    assert_eq!(fx.pos("A", 5_000), no_commands());
    assert_eq!(fx.pos("A", 6_000), no_commands());
    assert_eq!(fx.hub.buffered_bytes(ConnId(1)), Some(5 * len));
    // Draining one message is enough for one more (276 left is under 300: one parked goes
    // out, the oldest first: A, which kept its place with its newest fix).
    assert_eq!(
        fx.drained(1, len),
        vec![send(1, &pmsg(E1, "A", 6_000, LAT, LON))]
    );
    assert_eq!(
        fx.drained(1, 3 * len),
        vec![send(1, &pmsg(E1, "B", 4_500, LAT, LON))]
    );
    // Caught up: live again.
    fx.drain_all(1);
    assert_eq!(
        fx.pos("A", 7_000),
        vec![send(1, &pmsg(E1, "A", 7_000, LAT, LON))]
    );
    let s = fx.stats();
    assert_eq!(s.conflated_messages, 2);
    assert_eq!(s.slow_consumer_closes, 0);
    fx.assert_accounted();
}

#[test]
fn a_slow_client_is_conflated_then_closed_while_a_fast_client_gets_everything() {
    let mut fx = Fx::with(slow_config());
    fx.connect(1, anon()); // fast
    fx.connect(2, anon()); // slow: never drains
    fx.subscribe(1, E1, vec![]);
    fx.subscribe(2, E1, vec![]);
    let mut fast = Vec::new();
    let mut slow = Vec::new();
    let mut closed_at = None;
    let mut expected_fast = Vec::new();
    // Ten devices of E1, each moving: enough distinct devices to pass 1,000 bytes parked.
    let mut next = default_map();
    for d in 0..10 {
        next.insert(format!("D{d}"), [ev(E1)].into());
    }
    fx.device_map(2, next);
    fx.drain_all(1);
    // The slow client read its `subscribed` and snapshot, then stopped reading.
    fx.drain_all(2);
    for round in 0..3 {
        for d in 0..10 {
            let ts = (round * 10 + d + 1) * 1_000;
            let device = format!("D{d}");
            expected_fast.push(send(1, &pmsg(E1, &device, ts, LAT, LON)));
            for line in fx.pos(&device, ts) {
                if line.starts_with("c1 ") {
                    fast.push(line);
                } else {
                    if line.starts_with("c2 close") && closed_at.is_none() {
                        closed_at = Some(ts);
                    }
                    slow.push(line);
                }
            }
            fx.drain_all(1);
        }
    }
    assert_eq!(fast, expected_fast, "the fast client gets every position");
    // The slow one got three positions, had the next ones parked, then was closed.
    assert_eq!(slow.len(), 4, "{slow:#?}");
    assert!(slow[..3].iter().all(|l| l.contains(r#""type":"position""#)));
    assert_eq!(slow[3], "c2 close 1013 slow consumer");
    // 3 x 139 queued + 5 x 139 parked = 1,112 > 1,000 (7 x 139 = 973 is not): the 8th
    // position closes it.
    assert_eq!(pmsg_len("D0"), 139);
    assert_eq!(closed_at, Some(8_000));
    let s = fx.stats();
    assert_eq!(s.slow_consumer_closes, 1);
    assert_eq!(s.connections, 1);
    fx.assert_accounted();
}

#[test]
fn control_messages_are_sent_even_when_conflating() {
    let mut fx = Fx::with(slow_config());
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    for ts in 1..=4 {
        fx.pos("A", ts * 1_000);
    }
    assert_eq!(
        fx.text(1, r#"{"type":"ping"}"#),
        vec![send(1, r#"{"type":"pong"}"#)]
    );
    assert_eq!(fx.unsub(1, E1), vec![send(1, &unsubscribed(E1))]);
    // The parked position of the topic left was dropped with it.
    assert_eq!(fx.drain_all(1), no_commands());
    assert_eq!(fx.stats().dropped_messages, 1);
    fx.assert_accounted();
}

#[test]
fn draining_more_than_was_sent_never_goes_negative() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.text(1, r#"{"type":"ping"}"#);
    // `{"type":"pong"}` and its 2-byte header.
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(17));
    fx.drained(1, 1_000_000);
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(0));
}

// ---------------------------------------------------------------------------------------
// Keep-alive, shutdown, closing

#[test]
fn pings_every_interval_and_a_pong_keeps_the_connection() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.at(300);
    fx.connect(2, anon());
    assert_eq!(
        fx.hub.poll_timeout().map(wall_of),
        Some(UnixMillis(T0 + 1_000))
    );
    // A spurious early call does nothing.
    assert_eq!(fx.timeout(999), no_commands());
    assert_eq!(fx.timeout(1_000), vec!["c1 ping"]);
    assert_eq!(
        fx.hub.poll_timeout().map(wall_of),
        Some(UnixMillis(T0 + 1_300))
    );
    assert_eq!(fx.timeout(1_300), vec!["c2 ping"]);
    fx.pong(1);
    assert_eq!(fx.timeout(2_000), vec!["c1 ping"]);
    assert_eq!(fx.timeout(2_300), vec!["c2 ping"]);
    fx.pong(1);
    assert_eq!(fx.timeout(3_000), vec!["c1 ping"]);
    // c2's first ping (1.3 s) went unanswered for two intervals.
    assert_eq!(
        fx.timeout(3_300),
        vec!["c2 close 1008 no pong within two ping intervals"]
    );
    assert_eq!(fx.stats().ping_timeouts, 1);
    assert_eq!(
        fx.hub.poll_timeout().map(wall_of),
        Some(UnixMillis(T0 + 4_000))
    );
    // c1 answered late, but within two intervals of its oldest unanswered ping.
    fx.at(4_900);
    fx.pong(1);
    assert_eq!(fx.timeout(5_000), vec!["c1 ping"]);
    assert!(fx.hub.is_open(ConnId(1)));
}

#[test]
fn a_late_timeout_call_pings_once_and_reschedules_from_now() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    assert_eq!(fx.timeout(1_500), vec!["c1 ping"]);
    assert_eq!(
        fx.hub.poll_timeout().map(wall_of),
        Some(UnixMillis(T0 + 2_500))
    );
    assert_eq!(fx.timeout(3_499), vec!["c1 ping"]);
    // The first ping (1.5 s) is two intervals old at 3.5 s; the next tick closes.
    assert_eq!(fx.timeout(4_498), no_commands());
    assert_eq!(
        fx.timeout(4_499),
        vec!["c1 close 1008 no pong within two ping intervals"]
    );
    assert_eq!(fx.hub.poll_timeout().map(wall_of), None);
}

#[test]
fn shutdown_closes_everyone_with_1001() {
    let mut fx = Fx::new();
    fx.connect(2, anon());
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    assert_eq!(
        fx.input(Input::Shutdown),
        vec![
            "c1 close 1001 server shutting down",
            "c2 close 1001 server shutting down"
        ]
    );
    assert_eq!(fx.hub.poll_timeout().map(wall_of), None);
    assert_eq!(
        fx.connect(3, anon()),
        vec!["c3 close 1001 server shutting down"]
    );
    assert_eq!(fx.pos("A", 1_000), no_commands());
    assert_eq!(fx.timeout(10_000), no_commands());
    let s = fx.stats();
    assert_eq!((s.connections, s.subscriptions), (0, 0));
    assert_eq!(close_code::GOING_AWAY, 1001);
}

#[test]
fn a_client_that_went_away_gets_nothing_and_late_answers_are_ignored() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    let (_, load) = {
        fx.connect(2, anon());
        fx.authorize(2, E1, Visibility::Public)
    };
    fx.pos("A", 1_000);
    assert_eq!(fx.closed(1), no_commands());
    assert_eq!(fx.closed(2), no_commands());
    assert_eq!(fx.snapshot(load.unwrap(), Ok(vec![])), no_commands());
    assert_eq!(fx.drained(1, 10), no_commands());
    assert_eq!(fx.pong(1), no_commands());
    assert_eq!(fx.text(1, r#"{"type":"ping"}"#), no_commands());
    assert_eq!(
        fx.frame(1, Ok(ClientFrame::Ping(Bytes::from_static(b"x")))),
        no_commands()
    );
    assert_eq!(fx.frame(1, Err(FrameError::InvalidUtf8)), no_commands());
    assert_eq!(fx.pos("A", 2_000), no_commands());
    assert_eq!(fx.hub.poll_timeout().map(wall_of), None);
    let s = fx.stats();
    assert_eq!(
        (s.connections, s.subscriptions, fx.hub.waiting()),
        (0, 0, 0)
    );
    assert_eq!(s.protocol_errors, 0);
    fx.assert_accounted();
}

#[test]
fn nothing_is_ever_sent_to_a_connection_after_its_close() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.connect(2, anon());
    fx.subscribe(1, E1, vec![]);
    fx.subscribe(2, E1, vec![]);
    for ts in 1..=20 {
        fx.pos(if ts % 2 == 0 { "A" } else { "B" }, ts * 1_000);
        fx.drain_all(1);
        fx.text(2, "x");
        fx.pong(1);
        fx.timeout(ts * 1_000);
    }
    let mut closed = BTreeSet::new();
    for command in &fx.log {
        let conn = match command {
            Command::Send { conn, .. } => *conn,
            Command::Close { conn, .. } => {
                assert!(closed.insert(*conn), "closed twice: {conn}");
                continue;
            }
            _ => continue,
        };
        assert!(!closed.contains(&conn), "{command:?} after close");
    }
    assert_eq!(closed.into_iter().collect::<Vec<_>>(), vec![ConnId(2)]);
}

#[test]
fn a_duplicate_connected_is_ignored() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.connect(1, anon());
    assert_eq!(fx.stats().subscriptions, 1);
    assert_eq!(fx.pos("A", 1_000).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Write timeouts

const PING: &str = r#"{"type":"ping"}"#;

/// The `Close` a write timeout ends with.
fn write_timeout_close(conn: u64) -> String {
    format!(
        "c{conn} close {} {}",
        close_code::TRY_AGAIN_LATER,
        close_reason::WRITE_TIMEOUT
    )
}

#[test]
fn a_socket_that_takes_nothing_is_closed_exactly_at_the_write_timeout() {
    let mut fx = Fx::with(write_timeout_config());
    fx.connect(1, anon());
    fx.connect(2, anon());
    // A pong (17 bytes) queued for each; no write attempt reported yet: only the pings'
    // deadline.
    fx.text(1, PING);
    fx.text(2, PING);
    assert_eq!(fx.poll_timeout(), Some(60_000));
    // c1's socket takes nothing: it must take some bytes within 5 s.
    fx.at(100);
    assert_eq!(fx.drained(1, 0), no_commands());
    assert_eq!(fx.poll_timeout(), Some(5_100));
    // Attempts that take nothing do not postpone the deadline.
    fx.at(3_000);
    assert_eq!(fx.drained(1, 0), no_commands());
    assert_eq!(fx.poll_timeout(), Some(5_100));
    assert_eq!(fx.timeout(5_099), no_commands());
    assert!(fx.hub.is_open(ConnId(1)));
    assert_eq!(fx.stats().write_timeouts, 0);
    assert_eq!(fx.timeout(5_100), vec![write_timeout_close(1)]);
    assert_eq!(
        write_timeout_close(1),
        "c1 close 1013 took no bytes within the write timeout"
    );
    assert!(!fx.hub.is_open(ConnId(1)));
    // c2, which never reported a write attempt, is left alone.
    assert!(fx.hub.is_open(ConnId(2)));
    let s = fx.stats();
    assert_eq!(
        (s.write_timeouts, s.slow_consumer_closes, s.connections),
        (1, 0, 1)
    );
    assert_eq!(fx.poll_timeout(), Some(60_000));
    // Later reports about c1 are ignored.
    assert_eq!(fx.drained(1, 17), no_commands());
    assert_eq!(fx.timeout(10_000), no_commands());
}

#[test]
fn a_write_that_takes_some_bytes_starts_the_write_timeout_over() {
    let mut fx = Fx::with(write_timeout_config());
    fx.connect(1, anon());
    fx.text(1, PING);
    fx.text(1, PING);
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(34));
    fx.at(100);
    fx.drained(1, 0);
    assert_eq!(fx.poll_timeout(), Some(5_100));
    // Progress, but bytes are left: a fresh deadline from now.
    fx.at(3_000);
    assert_eq!(fx.drained(1, 10), no_commands());
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(24));
    assert_eq!(fx.poll_timeout(), Some(8_000));
    // The old deadline passes without effect.
    assert_eq!(fx.timeout(5_100), no_commands());
    fx.at(7_000);
    assert_eq!(fx.drained(1, 0), no_commands());
    assert_eq!(fx.poll_timeout(), Some(8_000));
    assert_eq!(fx.timeout(7_999), no_commands());
    assert!(fx.hub.is_open(ConnId(1)));
    assert_eq!(fx.timeout(8_000), vec![write_timeout_close(1)]);
    assert_eq!(fx.stats().write_timeouts, 1);
}

#[test]
fn a_write_that_empties_the_queue_cancels_the_write_timeout() {
    let mut fx = Fx::with(write_timeout_config());
    fx.connect(1, anon());
    fx.text(1, PING);
    fx.at(100);
    fx.drained(1, 0);
    assert_eq!(fx.poll_timeout(), Some(5_100));
    fx.at(3_000);
    assert_eq!(fx.drained(1, 17), no_commands());
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(0));
    assert_eq!(fx.poll_timeout(), Some(60_000));
    assert_eq!(fx.timeout(5_100), no_commands());
    assert!(fx.hub.is_open(ConnId(1)));
    // With nothing queued, an attempt that takes nothing starts no deadline.
    fx.drained(1, 0);
    assert_eq!(fx.poll_timeout(), Some(60_000));
    // Bytes queued again: a deadline only from the next attempt that leaves some.
    fx.text(1, PING);
    assert_eq!(fx.poll_timeout(), Some(60_000));
    fx.at(20_000);
    assert_eq!(fx.drained(1, 5), no_commands());
    assert_eq!(fx.poll_timeout(), Some(25_000));
    assert_eq!(fx.timeout(24_999), no_commands());
    assert_eq!(fx.timeout(25_000), vec![write_timeout_close(1)]);
    assert_eq!(fx.stats().write_timeouts, 1);
}

#[test]
fn the_timer_is_the_first_of_the_ping_and_write_deadlines() {
    // The write deadline first: a 500 ms write timeout, pings every second.
    let mut fx = Fx::with(LiveConfig {
        write_timeout_ms: 500,
        ..config()
    });
    fx.connect(1, anon());
    fx.text(1, PING);
    fx.at(100);
    fx.drained(1, 0);
    assert_eq!(fx.poll_timeout(), Some(600));
    assert_eq!(fx.timeout(600), vec![write_timeout_close(1)]);
    assert_eq!(fx.poll_timeout(), None);

    // The ping first: a 5 s write timeout. A ping queued on a stalled socket neither starts
    // nor moves its write deadline: only write attempts do.
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.text(1, PING);
    fx.at(100);
    fx.drained(1, 0);
    assert_eq!(fx.poll_timeout(), Some(1_000));
    assert_eq!(fx.timeout(1_000), vec!["c1 ping"]);
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(19));
    assert_eq!(fx.poll_timeout(), Some(2_000));
    fx.pong(1);
    assert_eq!(fx.timeout(2_000), vec!["c1 ping"]);
    fx.pong(1);
    assert_eq!(fx.timeout(3_000), vec!["c1 ping"]);
    fx.pong(1);
    assert_eq!(fx.timeout(4_000), vec!["c1 ping"]);
    assert_eq!(fx.poll_timeout(), Some(5_000));
    fx.pong(1);
    assert_eq!(fx.timeout(5_000), vec!["c1 ping"]);
    assert_eq!(fx.poll_timeout(), Some(5_100));
    assert_eq!(fx.timeout(5_100), vec![write_timeout_close(1)]);
}

// ---------------------------------------------------------------------------------------
// WebSocket control frames and protocol violations

#[test]
fn a_client_ping_frame_is_answered_with_a_pong_echoing_its_payload() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    assert_eq!(
        fx.frame(1, Ok(ClientFrame::Ping(Bytes::from_static(b"hi")))),
        vec!["c1 pong hi"]
    );
    let Some(Command::Send { frame, .. }) = fx.log.last() else {
        panic!("{:?}", fx.log)
    };
    assert_eq!(frame.bytes().as_ref(), &[0x8a, 2, b'h', b'i']);
    // A pong is queued like any frame.
    assert_eq!(fx.hub.queued_bytes(ConnId(1)), Some(4));
    // As the shell's reader delivers them: an empty ping, and one in the middle of a
    // fragmented message, answered at once; the message follows when complete.
    assert_eq!(
        fx.socket(1, &client_frame(true, 0x9, b"")),
        vec!["c1 pong "]
    );
    let mut bytes = client_frame(false, 0x1, br#"{"type":"#);
    bytes.extend(client_frame(true, 0x9, b"mid"));
    bytes.extend(client_frame(true, 0x0, br#""ping"}"#));
    assert_eq!(
        fx.socket(1, &bytes),
        vec!["c1 pong mid".to_string(), send(1, r#"{"type":"pong"}"#)]
    );
    assert!(fx.hub.is_open(ConnId(1)));
    // A client's ping is not a pong: the server's own pings still need answering.
    assert_eq!(fx.timeout(1_000), vec!["c1 ping"]);
    fx.frame(1, Ok(ClientFrame::Ping(Bytes::new())));
    fx.timeout(2_000);
    assert_eq!(
        fx.timeout(3_000),
        vec!["c1 close 1008 no pong within two ping intervals"]
    );
    assert_eq!(fx.stats().protocol_errors, 0);
}

#[test]
fn a_client_close_frame_is_answered_with_1000_and_nothing_follows() {
    let normal = |conn: u64| {
        format!(
            "c{conn} close {} {}",
            close_code::NORMAL,
            close_reason::NORMAL
        )
    };
    assert_eq!(close_code::NORMAL, 1000);
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    assert_eq!(
        fx.frame(1, Ok(ClientFrame::Close(Some(1001)))),
        vec![normal(1)]
    );
    assert!(!fx.hub.is_open(ConnId(1)));
    assert_eq!(fx.pos("A", 1_000), no_commands());
    assert_eq!(fx.text(1, PING), no_commands());
    assert_eq!(fx.timeout(5_000), no_commands());
    // From the socket, with a code and reason, and without either.
    fx.connect(2, anon());
    assert_eq!(
        fx.socket(2, &client_frame(true, 0x8, &[0x03, 0xe8, b'b', b'y', b'e'])),
        vec![normal(2)]
    );
    fx.connect(3, anon());
    assert_eq!(fx.socket(3, &client_frame(true, 0x8, &[])), vec![normal(3)]);
    let s = fx.stats();
    assert_eq!(
        (s.connections, s.subscriptions, s.protocol_errors),
        (0, 0, 0)
    );
    assert_eq!(fx.poll_timeout(), None);
}

#[test]
fn protocol_violations_close_with_1002_and_invalid_utf8_with_1007() {
    assert_eq!(
        (close_code::PROTOCOL_ERROR, close_code::INVALID_PAYLOAD),
        (1002, 1007)
    );
    let mut fx = Fx::new();
    for conn in 1..=4 {
        fx.connect(conn, anon());
    }
    fx.subscribe(1, E1, vec![]);
    assert_eq!(
        fx.frame(1, Err(FrameError::Protocol("reserved opcode"))),
        vec!["c1 close 1002 reserved opcode"]
    );
    assert_eq!(
        fx.frame(2, Err(FrameError::InvalidUtf8)),
        vec!["c2 close 1007 invalid UTF-8 in a text message"]
    );
    // As the shell's reader finds them on the socket: an unmasked frame, and a text
    // message that is not UTF-8.
    assert_eq!(
        fx.socket(3, &[0x81, 1, b'x']),
        vec!["c3 close 1002 unmasked client frame"]
    );
    assert_eq!(
        fx.socket(4, &client_frame(true, 0x1, &[0xff, 0xfe])),
        vec!["c4 close 1007 invalid UTF-8 in a text message"]
    );
    let s = fx.stats();
    assert_eq!(
        (s.protocol_errors, s.connections, s.subscriptions),
        (4, 0, 0)
    );
    // Nothing more for them, and a violation reported late is not counted again.
    assert_eq!(fx.pos("A", 1_000), no_commands());
    assert_eq!(fx.text(1, PING), no_commands());
    assert_eq!(fx.frame(2, Err(FrameError::InvalidUtf8)), no_commands());
    assert_eq!(fx.stats().protocol_errors, 4);
    assert_eq!(fx.poll_timeout(), None);
    fx.assert_accounted();
}

// ---------------------------------------------------------------------------------------
// Token lifetime, re-checks and the message rate (contract section 5).

fn token_config() -> LiveConfig {
    LiveConfig {
        max_messages_per_s: 3,
        visibility_recheck_ms: 10_000,
        ..config()
    }
}

fn granting(events: &[&str]) -> Principal {
    Principal::from_claims(events.iter().copied(), None)
}

#[test]
fn a_connection_closes_with_4001_exactly_when_its_token_expires() {
    let mut fx = Fx::with(token_config());
    fx.input(Input::Connected {
        conn: ConnId(1),
        principal: granting(&[E1]),
        expires_at: Some(UnixMillis(T0 + 2_500)),
    });
    assert_eq!(
        fx.hub.poll_timeout().map(wall_of),
        Some(UnixMillis(T0 + 1_000)),
        "the ping first"
    );
    fx.timeout(2_000);
    assert!(fx.timeout(2_499).iter().all(|l| !l.contains("close")));
    assert_eq!(
        fx.timeout(2_500),
        vec!["c1 close 4001 token expired".to_owned()]
    );
    assert!(!fx.hub.is_open(ConnId(1)));
    assert_eq!(fx.hub.counters().token_expiries, 1);
}

#[test]
fn auth_renews_the_deadline_and_rechecks_every_subscription() {
    let mut fx = Fx::with(token_config());
    fx.input(Input::Connected {
        conn: ConnId(1),
        principal: granting(&[E1]),
        expires_at: Some(UnixMillis(T0 + 5_000)),
    });
    let (_, load) = fx.authorize(1, E1, Visibility::Private);
    fx.snapshot(load.expect("granted"), Ok(vec![]));
    assert_eq!(
        fx.text(1, r#"{"type":"auth","token":"t2"}"#),
        vec!["verify c1 t2".to_owned()]
    );
    // A token that no longer names E1: answered, then E1 is looked up again.
    let renewed = UnixMillis(T0 + 60_000);
    let commands = {
        fx.hub.handle(
            clocks(fx.now()),
            Input::TokenVerified {
                conn: ConnId(1),
                result: Ok(live::Grant {
                    principal: granting(&[]),
                    expires_at: renewed,
                }),
            },
        );
        fx.raw()
    };
    assert_eq!(
        render(&commands[0]),
        send(1, r#"{"type":"auth","exp":1764324060}"#)
    );
    let Some(Command::Authorize { request, .. }) = commands.get(1) else {
        panic!("a re-check follows: {commands:?}");
    };
    assert_eq!(
        fx.visibility(*request, Ok(Visibility::Private)),
        vec![send(
            1,
            &error(
                "forbidden",
                Some(&format!("event:{E1}")),
                "topic does not exist or is not allowed"
            )
        )]
    );
    assert_eq!(fx.hub.counters().revoked_subscriptions, 1);
    // Nothing of E1 follows, and the old deadline no longer applies.
    assert!(fx.pos("A", 100).is_empty());
    assert!(fx.timeout(5_000).iter().all(|l| !l.contains("4001")));
    assert!(fx.hub.is_open(ConnId(1)));
}

#[test]
fn a_refused_token_changes_nothing() {
    let mut fx = Fx::with(token_config());
    fx.input(Input::Connected {
        conn: ConnId(1),
        principal: granting(&[E1]),
        expires_at: Some(UnixMillis(T0 + 5_000)),
    });
    fx.text(1, r#"{"type":"auth","token":"bad"}"#);
    assert_eq!(
        fx.input(Input::TokenVerified {
            conn: ConnId(1),
            result: Err(live::TokenRefused(
                "the token's signature is invalid".into()
            )),
        }),
        vec![send(
            1,
            &error("unauthorized", None, "the token's signature is invalid")
        )]
    );
    assert_eq!(
        fx.timeout(5_000),
        vec!["c1 close 4001 token expired".to_owned()],
        "the first token's deadline still holds"
    );
}

#[test]
fn a_subscription_is_rechecked_and_ends_when_its_event_turns_private() {
    let mut fx = Fx::with(token_config());
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    assert!(fx
        .timeout(9_999)
        .iter()
        .all(|l| !l.starts_with("authorize")));
    let lines = fx.timeout(10_000);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("authorize") && l.contains(E1)),
        "{lines:?}"
    );
    let request = fx
        .log
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::Authorize { request, .. } => Some(*request),
            _ => None,
        })
        .expect("a re-check");
    // Still public: kept, and looked up again an interval later.
    assert!(fx.visibility(request, Ok(Visibility::Public)).is_empty());
    fx.pong(1);
    let lines = fx.timeout(20_000);
    assert!(
        lines.iter().any(|l| l.starts_with("authorize")),
        "{lines:?}"
    );
    let request = fx
        .log
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::Authorize { request, .. } => Some(*request),
            _ => None,
        })
        .expect("a second re-check");
    // A failed look-up keeps it (and is counted); made private, it ends.
    assert!(fx.visibility(request, Err(failed())).is_empty());
    assert_eq!(fx.stats().lookup_failures, 1);
    fx.pong(1);
    fx.timeout(30_000);
    let request = fx
        .log
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::Authorize { request, .. } => Some(*request),
            _ => None,
        })
        .expect("a third re-check");
    assert_eq!(fx.visibility(request, Ok(Visibility::Private)).len(), 1);
    assert!(
        fx.pos("A", 100).is_empty(),
        "nothing of the topic after the error"
    );
}

#[test]
fn messages_over_the_rate_get_limit_exceeded_and_count_as_bad() {
    let mut fx = Fx::with(token_config());
    fx.connect(1, anon());
    let pong = send(1, r#"{"type":"pong"}"#);
    let limited = send(
        1,
        &error("limit_exceeded", None, "at most 3 messages per second"),
    );
    for _ in 0..3 {
        assert_eq!(fx.text(1, r#"{"type":"ping"}"#), vec![pong.clone()]);
    }
    assert_eq!(fx.text(1, r#"{"type":"ping"}"#), vec![limited.clone()]);
    // A WebSocket ping over the rate is not answered, and is no bad message.
    assert!(fx
        .frame(1, Ok(ClientFrame::Ping(Bytes::from_static(b"p"))))
        .is_empty());
    // A third of a second later, one more message is within the rate.
    fx.at(334);
    assert_eq!(fx.text(1, r#"{"type":"ping"}"#), vec![pong]);
    // Over-rate messages count: with the limit of 3 bad messages, the third closes.
    fx.text(1, r#"{"type":"ping"}"#);
    let lines = fx.text(1, r#"{"type":"ping"}"#);
    assert_eq!(
        lines,
        vec![limited, "c1 close 1008 too many bad requests".to_owned()]
    );
    assert_eq!(fx.hub.counters().rate_limited, 4);
}

// ---------------------------------------------------------------------------------------
// Exact boundaries: each rule at its threshold and one step either side

#[test]
fn the_backpressure_threshold_is_inclusive() {
    // `{"type":"pong"}` in a 17-byte frame: at most the threshold buffered is allowed.
    for (threshold, closes) in [(18, false), (17, false), (16, true)] {
        let mut fx = Fx::with(LiveConfig {
            backpressure_threshold_bytes: threshold,
            ..config()
        });
        fx.connect(1, anon());
        let mut expected = vec![send(1, r#"{"type":"pong"}"#)];
        if closes {
            expected.push("c1 close 1013 slow consumer".into());
        }
        assert_eq!(fx.text(1, r#"{"type":"ping"}"#), expected, "{threshold}");
    }
}

#[test]
fn the_conflate_threshold_is_inclusive() {
    let len = pmsg_len("A");
    let mut fx = Fx::with(LiveConfig {
        conflate_threshold_bytes: len,
        ..config()
    });
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.drain_all(1);
    // Nothing queued, then exactly the threshold queued: both sent. Over it: parked.
    assert_eq!(fx.pos("A", 1_000).len(), 1);
    assert_eq!(fx.pos("A", 2_000).len(), 1);
    assert_eq!(fx.pos("A", 3_000), no_commands());
    // Drained back down to exactly the threshold: the parked one goes out.
    assert_eq!(
        fx.drained(1, len),
        vec![send(1, &pmsg(E1, "A", 3_000, LAT, LON))]
    );
    fx.assert_accounted();
}

#[test]
fn the_snapshot_has_per_device_the_newest_of_stored_and_live_and_the_stored_on_a_tie() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.pos_at("A", 2_000, 54.6802, 25.2802); // newer than A's stored row
    fx.pos_at("B", 2_500, 54.6803, 25.2803); // older than B's stored row
    fx.pos_at("D", 3_000, 54.6804, 25.2804); // at D's stored fix time
    let lines = fx.subscribe(
        1,
        E1,
        vec![
            row("A", 1_000, 54.1, 25.1),
            row("B", 4_000, 54.2, 25.2),
            row("D", 3_000, 54.3, 25.3),
        ],
    );
    assert_eq!(
        lines.last().unwrap(),
        &send(
            1,
            &snapshot(
                E1,
                &[
                    spos("A", 2_000, 54.6802, 25.2802),
                    spos("B", 4_000, 54.2, 25.2),
                    // What Postgres keeps for the key, so what later snapshots show too.
                    spos("D", 3_000, 54.3, 25.3),
                ]
            )
        )
    );
}

#[test]
fn of_several_stored_rows_of_a_device_the_snapshot_has_the_newest_in_any_order() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let lines = fx.subscribe(
        1,
        E1,
        vec![
            row("A", 1_000, 54.1, 25.1),
            row("A", 3_000, 54.3, 25.3),
            row("A", 2_000, 54.2, 25.2),
            row("B", 2_000, 54.2, 25.2),
            row("B", 1_000, 54.1, 25.1),
        ],
    );
    assert_eq!(
        lines.last().unwrap(),
        &send(
            1,
            &snapshot(
                E1,
                &[spos("A", 3_000, 54.3, 25.3), spos("B", 2_000, 54.2, 25.2)]
            )
        )
    );
}

#[test]
fn a_subscription_counts_once_subscribed_is_sent_not_while_authorizing() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    let request = match fx.sub_text(1, E1).as_slice() {
        [Command::Authorize { request, .. }] => *request,
        other => panic!("expected one Authorize, got {other:?}"),
    };
    assert_eq!(fx.stats().subscriptions, 0);
    fx.visibility(request, Ok(Visibility::Public));
    assert_eq!(fx.stats().subscriptions, 1);
    // Refused after authorizing: never counted, and the one held stays counted once.
    let request = match fx.sub_text(1, E2).as_slice() {
        [Command::Authorize { request, .. }] => *request,
        other => panic!("expected one Authorize, got {other:?}"),
    };
    assert_eq!(fx.stats().subscriptions, 1);
    assert_eq!(
        fx.visibility(request, Ok(Visibility::Private)),
        vec![send(
            1,
            &error("forbidden", Some(&format!("event:{E2}")), FORBIDDEN_MESSAGE)
        )]
    );
    assert_eq!(fx.stats().subscriptions, 1);
}

#[test]
fn a_re_check_answered_while_the_topic_is_authorized_again_leaves_it_to_its_own_look_up() {
    let mut fx = Fx::with(token_config());
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    fx.timeout(10_000);
    let recheck = fx
        .log
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::Authorize { request, .. } => Some(*request),
            _ => None,
        })
        .expect("a re-check");
    // The client subscribes again before the re-check's answer comes back.
    let again = match fx.sub_text(1, E1).as_slice() {
        [Command::Authorize { request, .. }] => *request,
        other => panic!("expected one Authorize, got {other:?}"),
    };
    assert_ne!(again, recheck);
    // The re-check says private: the topic is not held (authorizing), so the answer
    // changes nothing; the fresh look-up decides.
    assert_eq!(
        fx.visibility(recheck, Ok(Visibility::Private)),
        no_commands()
    );
    let lines = fx.visibility(again, Ok(Visibility::Public));
    assert_eq!(lines[0], send(1, &subscribed(E1)));
    assert!(lines[1].starts_with("load "), "{lines:?}");
}

fn cached_config() -> LiveConfig {
    LiveConfig {
        visibility_cache_ms: 1_000,
        ..config()
    }
}

fn render_all(commands: &[Command]) -> Vec<String> {
    commands.iter().map(render).collect()
}

#[test]
fn a_visibility_read_answers_the_event_s_other_subscriptions_until_it_is_stale() {
    let mut fx = Fx::with(cached_config());
    for conn in 1..=3 {
        fx.connect(conn, anon());
    }
    fx.at(2_000);
    let (lines, _) = fx.authorize(1, E1, Visibility::Public);
    assert_eq!(lines, granted(E1, "A,B,D"));
    // Within the TTL: no look-up, the same answer at once.
    fx.at(2_999);
    assert_eq!(
        render_all(&fx.sub_text(2, E1)),
        vec![
            send(2, &subscribed(E1)),
            format!("load r3 c2 event:{E1} [A,B,D]"),
        ]
    );
    // Stale: the store is asked again.
    fx.at(3_000);
    assert_eq!(
        render_all(&fx.sub_text(3, E1)),
        vec![format!("authorize r4 c3 event:{E1}")]
    );
}

#[test]
fn a_cached_answer_that_forbids_is_given_without_a_look_up() {
    let mut fx = Fx::with(cached_config());
    fx.connect(1, anon());
    fx.connect(2, anon());
    let (lines, _) = fx.authorize(1, E2, Visibility::Private);
    assert_eq!(lines, forbidden(E2));
    assert_eq!(
        render_all(&fx.sub_text(2, E2)),
        vec![send(
            2,
            &error("forbidden", Some(&format!("event:{E2}")), FORBIDDEN_MESSAGE)
        )]
    );
}

#[test]
fn a_failed_look_up_is_not_kept() {
    let mut fx = Fx::with(cached_config());
    fx.connect(1, anon());
    fx.connect(2, anon());
    let request = match fx.sub_text(1, E1).as_slice() {
        [Command::Authorize { request, .. }] => *request,
        other => panic!("expected one Authorize, got {other:?}"),
    };
    fx.visibility(request, Err(failed()));
    assert_eq!(
        render_all(&fx.sub_text(2, E1)),
        vec![format!("authorize r1 c2 event:{E1}")]
    );
}

#[test]
fn without_a_ttl_every_subscription_is_looked_up() {
    let mut fx = Fx::new();
    fx.connect(1, anon());
    fx.connect(2, anon());
    fx.authorize(1, E1, Visibility::Public);
    assert_eq!(
        render_all(&fx.sub_text(2, E1)),
        vec![format!("authorize r2 c2 event:{E1}")]
    );
}

#[test]
fn a_batch_counts_its_accepted_positions_and_gives_their_fix_times() {
    let mut fx = Fx::new();
    fx.now = 3_000;
    let entries = vec![
        (EntryId::new(1, 0), Some(payload("A", 1_000, LAT, LON, 9))),
        // In no event: not in the batch.
        (
            EntryId::new(2, 0),
            Some(payload("ORPHAN", 1_500, LAT, LON, 9)),
        ),
        (EntryId::new(3, 0), Some(payload("B", 2_000, LAT, LON, 9))),
    ];
    fx.ingest.handle(fx.now(), IngestInput::Entries(entries));
    let batch = fx.ingest.poll_batch().expect("a batch");
    assert_eq!((batch.len(), batch.is_empty()), (2, false));
    assert_eq!(
        batch.fix_times().collect::<Vec<_>>(),
        [UnixMillis(T0 + 1_000), UnixMillis(T0 + 2_000)]
    );
    assert!(processor_core::live::FanoutBatch::default().is_empty());
}

#[test]
fn a_hub_keeps_its_configuration_and_its_counters_leave_the_gauges_out() {
    let mut fx = Fx::new();
    assert_eq!(fx.hub.config(), &config());
    fx.connect(1, anon());
    fx.subscribe(1, E1, vec![]);
    let (counters, stats) = (fx.hub.counters(), fx.hub.stats());
    assert_eq!((stats.connections, stats.subscriptions), (1, 1));
    // Counters of several shards are added up; gauges are not counters.
    assert_eq!((counters.connections, counters.subscriptions), (0, 0));
    assert_eq!(counters.snapshots, stats.snapshots);
}

#[test]
fn positions_held_for_a_snapshot_that_closes_the_connection_are_counted_dropped() {
    let mut fx = Fx::with(LiveConfig {
        conflate_threshold_bytes: 10_000,
        backpressure_threshold_bytes: 200,
        ..config()
    });
    fx.device_map(2, map(&[("A", &[E1]), ("X", &[E3])]));
    fx.connect(1, anon());
    // A first snapshot, never drained: it alone is exempt from the threshold.
    fx.subscribe(1, E1, vec![row("A", 500, LAT, LON)]);
    let (_, load) = fx.authorize(1, E3, Visibility::Public);
    fx.now = 2_000;
    assert_eq!(fx.pos("X", 1_000), no_commands(), "held while E3 loads");
    let lines = fx.snapshot(load.expect("a load"), Ok(vec![row("X", 900, LAT, LON)]));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("c1 close 1013 slow consumer"),
        "{lines:?}"
    );
    let s = fx.stats();
    assert_eq!((s.slow_consumer_closes, s.dropped_messages), (1, 1));
    fx.assert_accounted();
}

#[test]
fn a_closed_connection_takes_only_its_own_re_checks_with_it() {
    let mut fx = Fx::with(LiveConfig {
        // No pings in the way of the re-checks.
        ping_interval_ms: 1 << 40,
        ..token_config()
    });
    for conn in 1..=3 {
        fx.connect(conn, anon());
        fx.subscribe(conn, E1, vec![]);
    }
    // Connection 3 goes before the re-checks are due: the others' stay due.
    fx.now = 5_000;
    fx.closed(3);
    let lines = fx.timeout(10_000);
    for conn in [1, 2] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("authorize") && l.contains(&format!(" c{conn} "))),
            "{lines:?}"
        );
    }
    let of_2 = fx
        .log
        .iter()
        .rev()
        .find_map(|c| match c {
            Command::Authorize { request, conn, .. } if *conn == ConnId(2) => Some(*request),
            _ => None,
        })
        .expect("connection 2's re-check");
    // Connection 1 goes while both look-ups are out: connection 2's answer still applies.
    fx.closed(1);
    assert_eq!(
        fx.visibility(of_2, Ok(Visibility::Private)),
        vec![send(
            2,
            &error("forbidden", Some(&format!("event:{E1}")), FORBIDDEN_MESSAGE)
        )]
    );
}
