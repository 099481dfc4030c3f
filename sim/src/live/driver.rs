//! The live hub driven through a seeded run: a stream of positions (duplicates, late
//! uploads, faulty fixes, garbage, orphans), clients that connect, subscribe and leave, read
//! fast, slowly or not at all, authorization and snapshot answers that come late or fail, a
//! positions store that lags behind the stream, and device-to-event map versions.
//!
//! The reference model is plain maps: per device, the newest non-faulty fix published (the
//! fixes are generated so that none implies an impossible jump, which makes "newest
//! accepted" and "newest non-faulty published" the same thing), the faulty fixes, and the
//! orphan records. The checker ([`super::checker`]) judges every frame a client reads; the
//! driver judges what needs the model:
//! - a client that reads everything (fast) is up to date at the end of every step, whatever
//!   the others do: the bound on how long a slow client may delay a fast one is zero steps;
//! - when the run goes quiet, every client still connected that reads has, per topic and
//!   device, the newest fix (nothing that raced a snapshot, nothing conflated, was lost);
//! - no client's queue exceeds the back-pressure threshold plus [`QUEUE_SLACK`];
//! - nothing reaches a connection after its close;
//! - the orphan counter equals the records of devices in no event.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use uuid::Uuid;

use processor_core::live::{
    Command, ConnId, LiveConfig, LiveStats, Principal, RequestId, Visibility,
};
use processor_core::stream::EntryId;
use processor_core::wire::server::WirePosition;
use processor_core::UnixMillis;

use super::checker::{ClientView, LiveViolation, LiveViolationKind};
use super::defect::{LiveDefect, SimHub};
use crate::rng::SimRng;
use crate::trace::{fingerprint, Trace};

/// How far past the back-pressure threshold a queue may grow: the one frame (a snapshot at
/// most) that took it over.
pub const QUEUE_SLACK: u64 = 4 * 1024;
const STEPS: u64 = 250;
const MAX_CLIENTS: usize = 6;
const START_MS: i64 = 1_764_000_000_000;

#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    pub defect: LiveDefect,
    /// Keep this many trace records as text, for a failure report (0: hash only).
    pub trace_keep: usize,
}

#[derive(Debug, Clone)]
pub struct LiveReport {
    pub seed: u64,
    pub violations: Vec<LiveViolation>,
    pub trace_hash: u64,
    pub trace_tail: Vec<String>,
    pub stats: LiveStats,
    /// Frames clients read.
    pub frames: u64,
    /// Connections closed by the hub with 1013.
    pub slow_closes: u64,
}

impl LiveReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Reads every frame the moment it is sent.
    Fast,
    /// Reads some bytes now and then.
    Slow,
    /// Never reads, never answers a ping.
    Stalled,
}

struct Client {
    reader: Reader,
    view: ClientView,
    queue: VecDeque<Bytes>,
    queued: u64,
    closed: bool,
    pongs_owed: u32,
    over_bound: bool,
}

/// One generated fix.
#[derive(Clone)]
struct Fix {
    device: String,
    ts: i64,
    row: WirePosition,
    faulty: bool,
    payload: Bytes,
}

struct Live {
    rng: SimRng,
    hub: SimHub,
    trace: Trace,
    now: i64,
    step: u64,
    violations: Vec<LiveViolation>,
    clients: BTreeMap<ConnId, Client>,
    next_conn: u64,
    events: Vec<(Uuid, Visibility)>,
    unknown_event: Uuid,
    devices: Vec<String>,
    map: BTreeMap<String, BTreeSet<Uuid>>,
    map_version: u64,
    /// (device, event) pairs whose membership changed during the run: not judged at the end.
    churned: BTreeSet<(String, Uuid)>,
    newest: BTreeMap<String, i64>,
    faulty: BTreeSet<(String, i64)>,
    orphans: u64,
    last_ts: BTreeMap<String, i64>,
    late: Vec<(u64, Fix)>,
    store: BTreeMap<String, WirePosition>,
    store_queue: Vec<(u64, Fix)>,
    pending_auth: Vec<(u64, RequestId, Uuid)>,
    pending_snapshots: Vec<(u64, RequestId, Vec<String>)>,
    entry_seq: u64,
    slow_closes: u64,
}

/// Runs one seed of the live path. Prints `SIM_SEED=<seed>` first.
pub fn run_live(seed: u64, options: &LiveOptions) -> LiveReport {
    eprintln!("SIM_SEED={seed}");
    let mut rng = SimRng::new(seed);
    let config = LiveConfig {
        conflate_threshold_bytes: 1_024,
        backpressure_threshold_bytes: 3 * 1_024,
        ping_interval_ms: 20_000,
        max_subscriptions: 3,
        ..LiveConfig::default()
    };
    let mut live = Live::new(&mut rng, config, options);
    for _ in 0..STEPS {
        live.step();
    }
    live.quiet();
    live.finish(seed)
}

impl Live {
    fn new(rng: &mut SimRng, config: LiveConfig, options: &LiveOptions) -> Live {
        let events = vec![
            (Uuid::from_u128(0xe0), Visibility::Public),
            (Uuid::from_u128(0xe1), Visibility::Private),
            (Uuid::from_u128(0xe2), Visibility::Public),
        ];
        let devices: Vec<String> = (0..rng.range(3, 8))
            .map(|i| (356_307_040_000_000u64 + i).to_string())
            .collect();
        let mut map = BTreeMap::new();
        for device in &devices {
            let mut set = BTreeSet::new();
            for (event, _) in &events {
                if rng.chance(0.45) {
                    set.insert(*event);
                }
            }
            if !set.is_empty() {
                map.insert(device.clone(), set);
            }
        }
        let mut live = Live {
            rng: rng.fork(),
            hub: SimHub::new(config, UnixMillis(START_MS), options.defect),
            trace: Trace::new(options.trace_keep),
            now: START_MS,
            step: 0,
            violations: Vec::new(),
            clients: BTreeMap::new(),
            next_conn: 1,
            events,
            unknown_event: Uuid::from_u128(0xee),
            devices,
            map,
            map_version: 1,
            churned: BTreeSet::new(),
            newest: BTreeMap::new(),
            faulty: BTreeSet::new(),
            orphans: 0,
            last_ts: BTreeMap::new(),
            late: Vec::new(),
            store: BTreeMap::new(),
            store_queue: Vec::new(),
            pending_auth: Vec::new(),
            pending_snapshots: Vec::new(),
            entry_seq: 0,
            slow_closes: 0,
        };
        let map = live.map.clone();
        live.trace.record(format_args!("map v1 {map:?}"));
        live.hub.handle_device_map(UnixMillis(START_MS), 1, map);
        live.pump();
        live
    }

    fn violation(&mut self, kind: LiveViolationKind, detail: String) {
        self.trace
            .record(format_args!("VIOLATION {kind:?} {detail}"));
        self.violations.push(LiveViolation {
            kind,
            step: self.step,
            detail,
        });
    }

    fn at(&self) -> UnixMillis {
        UnixMillis(self.now)
    }

    fn step(&mut self) {
        self.step += 1;
        self.now += self.rng.range(200, 2_500) as i64;
        if self
            .hub
            .poll_timeout()
            .is_some_and(|t| t.as_i64() <= self.now)
        {
            self.hub.handle_timeout(self.at());
            self.pump();
        }
        self.answer_pongs();
        self.store_due(false);
        for _ in 0..self.rng.range(1, 3) {
            match self.rng.below(100) {
                0..=29 => self.publish(),
                30..=35 => self.connect(),
                36..=37 => self.disconnect(),
                38..=51 => self.subscribe(),
                52..=55 => self.unsubscribe(),
                56..=67 => self.answer_authorizations(false),
                68..=79 => self.answer_snapshots(false),
                80..=94 => self.drain_slow(),
                95..=97 => self.change_map(),
                _ => self.send_garbage(),
            }
        }
        self.check_fast_clients();
    }

    /// Executes every command the hub has, feeding fast clients as it goes.
    fn pump(&mut self) {
        while let Some(command) = self.hub.poll_command() {
            match command {
                Command::Send { conn, bytes, .. } => {
                    self.trace.record(format_args!(
                        "send {conn} {} {:x}",
                        bytes.len(),
                        fingerprint(&bytes)
                    ));
                    let backpressure = self.hub.config().backpressure_threshold_bytes;
                    let Some(client) = self.clients.get_mut(&conn).filter(|c| !c.closed) else {
                        self.violation(LiveViolationKind::AfterClose, format!("send to {conn}"));
                        continue;
                    };
                    client.queued += bytes.len() as u64;
                    client.queue.push_back(bytes);
                    if client.queued > backpressure + QUEUE_SLACK && !client.over_bound {
                        client.over_bound = true;
                        let queued = client.queued;
                        self.violation(
                            LiveViolationKind::QueueUnbounded,
                            format!("{conn} holds {queued} bytes"),
                        );
                    }
                    if self
                        .clients
                        .get(&conn)
                        .is_some_and(|c| c.reader == Reader::Fast)
                    {
                        self.drain(conn, u64::MAX);
                    }
                }
                Command::Close { conn, code, .. } => {
                    self.trace.record(format_args!("close {conn} {code}"));
                    if code == processor_core::live::close_code::TRY_AGAIN_LATER {
                        self.slow_closes += 1;
                    }
                    match self.clients.get_mut(&conn).filter(|c| !c.closed) {
                        Some(client) => {
                            client.closed = true;
                            client.queue.clear();
                        }
                        None => {
                            self.violation(LiveViolationKind::AfterClose, format!("close {conn}"))
                        }
                    }
                }
                Command::Ping { conn } => {
                    self.trace.record(format_args!("ping {conn}"));
                    match self.clients.get_mut(&conn).filter(|c| !c.closed) {
                        Some(client) if client.reader != Reader::Stalled => client.pongs_owed += 1,
                        Some(_) => {}
                        None => {
                            self.violation(LiveViolationKind::AfterClose, format!("ping {conn}"))
                        }
                    }
                }
                Command::Authorize { request, topic, .. } => {
                    self.trace
                        .record(format_args!("authorize {request} {topic}"));
                    let due = self.step + self.rng.range(0, 3);
                    self.pending_auth.push((due, request, topic.event_id()));
                }
                Command::LoadSnapshot {
                    request, devices, ..
                } => {
                    self.trace
                        .record(format_args!("load snapshot {request} {devices:?}"));
                    let due = self.step + self.rng.range(0, 4);
                    self.pending_snapshots.push((due, request, devices));
                }
            }
        }
    }

    /// The client reads up to `budget` bytes of whole frames, and the hub is told.
    fn drain(&mut self, conn: ConnId, budget: u64) {
        let mut left = budget;
        loop {
            let Some(client) = self.clients.get_mut(&conn).filter(|c| !c.closed) else {
                return;
            };
            let Some(frame) = client.queue.front() else {
                return;
            };
            let len = frame.len() as u64;
            if len > left {
                return;
            }
            left -= len;
            let frame = client.queue.pop_front().unwrap_or_default();
            client.queued -= len;
            let broken = client.view.receive(&frame, &self.faulty);
            for (kind, detail) in broken {
                self.violation(kind, format!("{conn}: {detail}"));
            }
            self.hub.handle_drained(self.at(), conn, len);
            self.pump();
        }
    }

    fn open_clients(&self) -> Vec<ConnId> {
        self.clients
            .iter()
            .filter(|(_, c)| !c.closed)
            .map(|(id, _)| *id)
            .collect()
    }

    fn pick_open(&mut self) -> Option<ConnId> {
        let open = self.open_clients();
        (!open.is_empty()).then(|| open[self.rng.index(open.len())])
    }

    fn connect(&mut self) {
        if self.open_clients().len() >= MAX_CLIENTS {
            return;
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let reader = match self.rng.below(10) {
            0..=4 => Reader::Fast,
            5..=7 => Reader::Slow,
            _ => Reader::Stalled,
        };
        let principal = match self.rng.below(3) {
            0 => Principal::Anonymous,
            1 => Principal::Token {
                events: [self.events[1].0].into_iter().collect(),
                admin: false,
            },
            _ => Principal::Token {
                events: BTreeSet::new(),
                admin: true,
            },
        };
        self.trace
            .record(format_args!("connect {conn} {reader:?} {principal:?}"));
        self.clients.insert(
            conn,
            Client {
                reader,
                view: ClientView::default(),
                queue: VecDeque::new(),
                queued: 0,
                closed: false,
                pongs_owed: 0,
                over_bound: false,
            },
        );
        self.hub.handle_connected(self.at(), conn, principal);
        self.pump();
    }

    fn disconnect(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        self.trace.record(format_args!("disconnect {conn}"));
        if let Some(client) = self.clients.get_mut(&conn) {
            client.closed = true;
            client.queue.clear();
        }
        self.hub.handle_closed(self.at(), conn);
        self.pump();
    }

    fn client_says(&mut self, conn: ConnId, text: String) {
        self.trace.record(format_args!("{conn} says {text}"));
        self.hub
            .handle_client_text(self.at(), conn, text.as_bytes());
        self.pump();
    }

    fn random_topic(&mut self) -> String {
        let event = match self.rng.below(8) {
            0 => self.unknown_event,
            _ => self.events[self.rng.index(self.events.len())].0,
        };
        format!("event:{event}")
    }

    fn subscribe(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let topic = self.random_topic();
        if let Some(client) = self.clients.get_mut(&conn) {
            client.view.requested(&topic);
        }
        self.client_says(conn, format!(r#"{{"type":"subscribe","topic":"{topic}"}}"#));
    }

    fn unsubscribe(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let topic = self.random_topic();
        self.client_says(
            conn,
            format!(r#"{{"type":"unsubscribe","topic":"{topic}"}}"#),
        );
    }

    fn send_garbage(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let text = match self.rng.below(3) {
            0 => r#"{"type":"ping"}"#,
            1 => r#"{"type":"dance"}"#,
            _ => "not json",
        };
        self.client_says(conn, text.to_owned());
    }

    fn answer_pongs(&mut self) {
        let owed: Vec<(ConnId, u32)> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closed && c.pongs_owed > 0)
            .map(|(id, c)| (*id, c.pongs_owed))
            .collect();
        for (conn, n) in owed {
            if let Some(c) = self.clients.get_mut(&conn) {
                c.pongs_owed = 0;
            }
            for _ in 0..n {
                self.trace.record(format_args!("pong {conn}"));
                self.hub.handle_pong(self.at(), conn);
            }
        }
        self.pump();
    }

    fn drain_slow(&mut self) {
        let slow: Vec<ConnId> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closed && c.reader == Reader::Slow)
            .map(|(id, _)| *id)
            .collect();
        for conn in slow {
            let budget = self.rng.range(100, 1_500);
            self.drain(conn, budget);
        }
    }

    /// `all`: answer every pending request now, successfully (the quiet phase).
    fn answer_authorizations(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_auth)
            .into_iter()
            .partition(|(d, _, _)| all || *d <= step);
        self.pending_auth = later;
        for (_, request, event) in due {
            if !all && self.rng.chance(0.05) {
                self.trace
                    .record(format_args!("authorization failed {request}"));
                self.hub.handle_authorization_failed(self.at(), request);
            } else {
                let visibility = self
                    .events
                    .iter()
                    .find(|(e, _)| *e == event)
                    .map_or(Visibility::Unknown, |(_, v)| *v);
                self.trace
                    .record(format_args!("authorization {request} {visibility:?}"));
                self.hub
                    .handle_authorization(self.at(), request, visibility);
            }
            self.pump();
        }
    }

    fn answer_snapshots(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_snapshots)
            .into_iter()
            .partition(|(d, _, _)| all || *d <= step);
        self.pending_snapshots = later;
        for (_, request, devices) in due {
            if !all && self.rng.chance(0.05) {
                self.trace.record(format_args!("snapshot failed {request}"));
                self.hub.handle_snapshot_failed(self.at(), request);
            } else {
                let rows: Vec<WirePosition> = devices
                    .iter()
                    .filter_map(|d| self.store.get(d).cloned())
                    .collect();
                self.trace.record(format_args!(
                    "snapshot {request} {:?}",
                    rows.iter()
                        .map(|r| (&r.device_id, r.ts))
                        .collect::<Vec<_>>()
                ));
                self.hub.handle_snapshot(self.at(), request, rows);
            }
            self.pump();
        }
    }

    /// The durable path, lagging: fixes become visible to snapshots some steps after they
    /// were published, the newest non-faulty per device.
    fn store_due(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.store_queue)
            .into_iter()
            .partition(|(d, _)| all || *d <= step);
        self.store_queue = later;
        for (_, fix) in due {
            if fix.faulty {
                continue;
            }
            let newer = self.store.get(&fix.device).is_none_or(|r| r.ts < fix.ts);
            if newer {
                self.trace
                    .record(format_args!("stored {} {}", fix.device, fix.ts));
                self.store.insert(fix.device.clone(), fix.row.clone());
            }
        }
    }

    fn change_map(&mut self) {
        let device = self.devices[self.rng.index(self.devices.len())].clone();
        let event = self.events[self.rng.index(self.events.len())].0;
        let set = self.map.entry(device.clone()).or_default();
        if !set.remove(&event) {
            set.insert(event);
        }
        if set.is_empty() {
            self.map.remove(&device);
        }
        self.churned.insert((device, event));
        self.map_version += 1;
        let map = self.map.clone();
        self.trace
            .record(format_args!("map v{} {map:?}", self.map_version));
        self.hub.handle_device_map(self.at(), self.map_version, map);
        self.pump();
    }

    /// A fresh fix of `device`: never before its last one, on a slow straight line (so no
    /// two fixes of a device imply an impossible speed), sometimes faulty.
    fn fix(&mut self, device: &str) -> Fix {
        let last = self
            .last_ts
            .get(device)
            .copied()
            .unwrap_or(START_MS - 60_000);
        let ts = (self.now - self.rng.range(0, 800) as i64).max(last + 1);
        self.last_ts.insert(device.to_owned(), ts);
        let index = self.devices.iter().position(|d| d == device).unwrap_or(0) as f64;
        let seconds = (ts - START_MS) as f64 / 1_000.0;
        let (mut lat, mut lon) = (54.0 + index * 0.01 + seconds * 1e-5, 25.0 + seconds * 1e-5);
        let mut satellites = 9;
        let faulty = match self.rng.below(40) {
            0 => {
                (lat, lon) = (0.0, 0.0);
                true
            }
            1 => {
                satellites = 0;
                true
            }
            _ => false,
        };
        let speed = if self.rng.chance(0.3) { 0.0 } else { 4.0 };
        let payload = serde_json::json!({
            "device_id": device, "timestamp": ts, "latitude": lat, "longitude": lon,
            "satellites": satellites, "speed": speed, "angle": 90.0
        })
        .to_string();
        Fix {
            device: device.to_owned(),
            ts,
            row: WirePosition {
                device_id: device.to_owned(),
                lat,
                lon,
                ts,
                speed,
                course: 90.0,
            },
            faulty,
            payload: Bytes::from(payload),
        }
    }

    fn publish(&mut self) {
        let mut batch: Vec<(EntryId, Option<Bytes>)> = Vec::new();
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late)
            .into_iter()
            .partition(|(d, _)| *d <= step);
        self.late = later;
        let mut fixes: Vec<Fix> = due.into_iter().map(|(_, f)| f).collect();
        for _ in 0..self.rng.range(1, 6) {
            let device = self.devices[self.rng.index(self.devices.len())].clone();
            let fix = self.fix(&device);
            if self.rng.chance(0.1) {
                let due = self.step + self.rng.range(1, 10);
                self.late.push((due, fix));
                continue;
            }
            if self.rng.chance(0.1) {
                fixes.push(fix.clone());
            }
            fixes.push(fix);
        }
        for fix in fixes {
            self.record_published(&fix);
            batch.push((self.next_entry(), Some(fix.payload.clone())));
            let due = self.step + self.rng.range(0, 6);
            self.store_queue.push((due, fix));
        }
        if self.rng.chance(0.05) {
            batch.push((
                self.next_entry(),
                Some(Bytes::from_static(b"{\"device_id\":")),
            ));
        }
        if self.rng.chance(0.02) {
            batch.push((self.next_entry(), None));
        }
        self.trace.record(format_args!(
            "positions {:?}",
            batch
                .iter()
                .map(|(id, p)| (id.to_string(), p.as_deref().map(fingerprint)))
                .collect::<Vec<_>>()
        ));
        self.hub.handle_positions(self.at(), batch);
        self.pump();
    }

    fn next_entry(&mut self) -> EntryId {
        self.entry_seq += 1;
        EntryId::new(self.now as u64, self.entry_seq)
    }

    fn record_published(&mut self, fix: &Fix) {
        if !self.map.contains_key(&fix.device) {
            self.orphans += 1;
        }
        if fix.faulty {
            self.faulty.insert((fix.device.clone(), fix.ts));
        } else {
            let newest = self.newest.entry(fix.device.clone()).or_insert(i64::MIN);
            *newest = (*newest).max(fix.ts);
        }
    }

    /// Per (topic, device) whose membership never changed, what the client's last `ts`
    /// should be: the device's newest fix.
    fn behind(&self, client: &Client) -> Vec<String> {
        let mut behind = Vec::new();
        for topic in client.view.live_topics() {
            let Some(event) = topic
                .strip_prefix("event:")
                .and_then(|e| Uuid::try_parse(e).ok())
            else {
                continue;
            };
            for (device, events) in &self.map {
                if !events.contains(&event) || self.churned.contains(&(device.clone(), event)) {
                    continue;
                }
                let expected = self.newest.get(device).copied();
                let got = client
                    .view
                    .last
                    .get(&(topic.clone(), device.clone()))
                    .copied();
                if expected != got {
                    behind.push(format!(
                        "{topic} {device}: has {got:?}, newest {expected:?}"
                    ));
                }
            }
        }
        behind
    }

    fn check_fast_clients(&mut self) {
        let found: Vec<(ConnId, Vec<String>)> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closed && c.reader == Reader::Fast)
            .map(|(id, c)| (*id, self.behind(c)))
            .collect();
        for (conn, behind) in found {
            for b in behind {
                self.violation(LiveViolationKind::FastClientBehind, format!("{conn}: {b}"));
            }
        }
    }

    /// No more input but answers, stored rows and reading: everything settles.
    fn quiet(&mut self) {
        self.step += 1;
        let late: Vec<Fix> = std::mem::take(&mut self.late)
            .into_iter()
            .map(|(_, f)| f)
            .collect();
        if !late.is_empty() {
            let mut batch = Vec::new();
            for fix in late {
                self.record_published(&fix);
                batch.push((self.next_entry(), Some(fix.payload.clone())));
                self.store_queue.push((self.step, fix));
            }
            self.hub.handle_positions(self.at(), batch);
            self.pump();
        }
        self.store_due(true);
        for _ in 0..20 {
            self.now += 100;
            self.answer_pongs();
            self.answer_authorizations(true);
            self.answer_snapshots(true);
            for conn in self.open_clients() {
                if self
                    .clients
                    .get(&conn)
                    .is_some_and(|c| c.reader != Reader::Stalled)
                {
                    self.drain(conn, u64::MAX);
                }
            }
        }
        let found: Vec<(ConnId, Vec<String>)> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closed && c.reader != Reader::Stalled)
            .map(|(id, c)| (*id, self.behind(c)))
            .collect();
        for (conn, behind) in found {
            for b in behind {
                self.violation(LiveViolationKind::Lost, format!("{conn}: {b}"));
            }
        }
        let counted = self.hub.counters().orphan_records;
        if counted != self.orphans {
            self.violation(
                LiveViolationKind::OrphanCount,
                format!("hub counted {counted}, the stream had {}", self.orphans),
            );
        }
        self.hub.handle_shutdown(self.at());
        self.pump();
    }

    fn finish(self, seed: u64) -> LiveReport {
        LiveReport {
            seed,
            trace_hash: self.trace.hash(),
            trace_tail: self.trace.tail(),
            stats: self.hub.counters(),
            frames: self.clients.values().map(|c| c.view.frames).sum(),
            slow_closes: self.slow_closes,
            violations: self.violations,
        }
    }
}
