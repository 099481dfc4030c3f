//! The live path driven through a seeded run: a stream of positions (duplicates, late
//! uploads, faulty fixes, garbage, orphans) judged once by the real [`Ingest`], whose
//! batches go to every shard; clients that connect, subscribe and leave, read fast, slowly
//! or not at all; authorization and snapshot answers that come late or fail; a positions
//! store that lags behind the stream; and device-to-event map versions.
//!
//! The system under test is the real [`processor_core::live::LiveHub`] split into 2 or 3
//! shards (drawn from the seed), as the shell runs it: connection `c` belongs to shard
//! `c % shards` and only its shard hears of it, while every batch and every device map go to
//! every shard (the same `Arc`). Side by side runs a single-shard reference hub, fed the
//! same inputs in the same order. The clients read what the shards send; every command
//! the reference gives for a connection is compared, in order, with what the connection's
//! shard gave it (frame bytes, close code and reason, authorization and snapshot requests):
//! any difference is a [`LiveViolationKind::ShardDiverged`]. The two systems name their
//! requests independently, so an answer is paired by connection and by the request's place
//! among that connection's requests (which the comparison has checked to be for the same
//! topic), never by [`RequestId`].
//!
//! The reference model is plain maps: per device, the newest non-faulty fix published (the
//! fixes are generated so that none implies an impossible jump, which makes "newest
//! accepted" and "newest non-faulty published" the same thing), the faulty fixes, the
//! orphan records, and per client when its socket last took bytes. The checker
//! ([`super::checker`]) judges every frame a client reads; the driver judges what needs the
//! model:
//! - a client that reads everything (fast) is up to date at the end of every step, whatever
//!   the others do: the bound on how long a slow client may delay a fast one is zero steps;
//! - when the run goes quiet, every client still connected that reads has, per topic and
//!   device, the newest fix (nothing that raced a snapshot, nothing conflated, was lost);
//! - no client's queue exceeds the back-pressure threshold plus [`QUEUE_SLACK`];
//! - nothing reaches a connection after its close;
//! - a connection is closed for the write timeout if and only if its socket held unwritten
//!   bytes and took none of them for the whole timeout (judged when the hub is told the
//!   time, at the start of a step);
//! - the orphan counter equals the records of devices in no event;
//! - sharding changes no client's view (above), and the shards' counters add up to the
//!   reference's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use processor_core::live::{
    close_code, close_reason, text, Command, ConnId, DeviceMap, Ingest, IngestInput, IngestStats,
    Input, LiveConfig, LiveStats, LookupFailed, Principal, RequestId, TokenRefused, Visibility,
};
use processor_core::stream::EntryId;
use processor_core::websocket::{ClientFrame, Frame, Opcode};
use processor_core::wire::server::WirePosition;
use processor_core::wire::Topic;
use processor_core::{decode_position, Position, UnixMillis};

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
/// Write timeouts a seed draws from: shorter than the ping timeout (a stalled client that
/// holds bytes is closed for it, and a slow one now and then), between the first ping and
/// the ping timeout (either may close a stalled client first), and longer than the run
/// (only pings and back-pressure close clients, as before the write timeout existed).
const WRITE_TIMEOUTS_MS: [u64; 3] = [20_000, 45_000, 3_600_000];

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
    /// The shards' counters, added up.
    pub stats: LiveStats,
    /// The ingest's counters.
    pub ingest: IngestStats,
    /// Hub shards the run used.
    pub shards: usize,
    /// The write timeout the run used.
    pub write_timeout_ms: u64,
    /// Frames clients read.
    pub frames: u64,
    /// Connections closed by the hub with 1013 (slow consumer or write timeout).
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
    queue: VecDeque<Frame>,
    queued: u64,
    closed: bool,
    pongs_owed: u32,
    over_bound: bool,
    /// Since when the socket has held unwritten bytes without taking any (the last time it
    /// took some, or when it got bytes with none waiting); `None` while nothing waits.
    stalled_since: Option<i64>,
    timeout_missed: bool,
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

/// One thing a hub did for a connection: what the sharding check compares.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Frame(Frame),
    Close(u16, &'static str),
    Authorize(Topic),
    LoadSnapshot(Topic, Vec<String>),
    VerifyToken(String),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Frame(frame) => {
                let payload = String::from_utf8_lossy(frame.payload());
                let cut: String = payload.chars().take(160).collect();
                write!(f, "{:?} frame {cut:?}", frame.opcode())
            }
            Got::Close(code, reason) => write!(f, "close {code} {reason:?}"),
            Got::Authorize(topic) => write!(f, "authorize {topic}"),
            Got::LoadSnapshot(topic, devices) => write!(f, "load snapshot {topic} {devices:?}"),
            Got::VerifyToken(_) => write!(f, "verify token"),
        }
    }
}

/// What the reference gave a connection that its shard has not given yet.
#[derive(Default)]
struct Expected {
    queue: VecDeque<(Got, Option<RequestId>)>,
    diverged: bool,
}

struct Live {
    rng: SimRng,
    config: LiveConfig,
    ingest: Ingest,
    /// The system under test: connection `c` belongs to shard `c % shards.len()`.
    shards: Vec<SimHub>,
    /// The single-shard reference, fed the same inputs.
    reference: SimHub,
    /// Per connection, what the reference gave it and its shard has not (yet).
    expected: BTreeMap<ConnId, Expected>,
    /// A shard's request (by its connection) to the reference's request it was paired with.
    requests: BTreeMap<(ConnId, RequestId), RequestId>,
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
    pending_auth: Vec<(u64, ConnId, RequestId, Uuid)>,
    pending_snapshots: Vec<(u64, ConnId, RequestId, Vec<String>)>,
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
        write_timeout_ms: WRITE_TIMEOUTS_MS[rng.index(WRITE_TIMEOUTS_MS.len())],
        max_subscriptions: 3,
        // The reference model does not judge the message rate yet: out of its way. The
        // visibility re-checks run at their default pace (events keep their visibility
        // here, so they must change nothing a client sees).
        max_messages_per_s: 1_000_000,
        ..LiveConfig::default()
    };
    let shards = rng.range(2, 3) as usize;
    let mut live = Live::new(&mut rng, config, shards, options);
    for _ in 0..STEPS {
        live.step();
    }
    live.quiet();
    live.finish(seed)
}

/// The counters of several shards, added up.
fn add(a: LiveStats, b: LiveStats) -> LiveStats {
    let LiveStats {
        position_deliveries,
        fanout_messages,
        conflated_messages,
        dropped_messages,
        slow_consumer_closes,
        ping_timeouts,
        write_timeouts,
        protocol_errors,
        token_expiries,
        rate_limited,
        revoked_subscriptions,
        snapshots,
        lookup_failures,
        connections,
        subscriptions,
        waiting,
    } = b;
    LiveStats {
        position_deliveries: a.position_deliveries + position_deliveries,
        fanout_messages: a.fanout_messages + fanout_messages,
        conflated_messages: a.conflated_messages + conflated_messages,
        dropped_messages: a.dropped_messages + dropped_messages,
        slow_consumer_closes: a.slow_consumer_closes + slow_consumer_closes,
        ping_timeouts: a.ping_timeouts + ping_timeouts,
        write_timeouts: a.write_timeouts + write_timeouts,
        protocol_errors: a.protocol_errors + protocol_errors,
        token_expiries: a.token_expiries + token_expiries,
        rate_limited: a.rate_limited + rate_limited,
        revoked_subscriptions: a.revoked_subscriptions + revoked_subscriptions,
        snapshots: a.snapshots + snapshots,
        lookup_failures: a.lookup_failures + lookup_failures,
        connections: a.connections + connections,
        subscriptions: a.subscriptions + subscriptions,
        waiting: a.waiting + waiting,
    }
}

impl Live {
    fn new(rng: &mut SimRng, config: LiveConfig, shards: usize, options: &LiveOptions) -> Live {
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
        let start = UnixMillis(START_MS);
        let mut live = Live {
            rng: rng.fork(),
            ingest: Ingest::new(&config),
            shards: (0..shards)
                .map(|i| SimHub::new(config.clone(), start, options.defect, i))
                .collect(),
            reference: SimHub::new(config.clone(), start, options.defect, 0),
            config,
            expected: BTreeMap::new(),
            requests: BTreeMap::new(),
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
        live.trace.record(format_args!(
            "{shards} shards, write timeout {} ms",
            live.config.write_timeout_ms
        ));
        live.send_map();
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

    fn shard_of(&self, conn: ConnId) -> usize {
        (conn.0 % self.shards.len() as u64) as usize
    }

    fn step(&mut self) {
        self.step += 1;
        self.now += self.rng.range(200, 2_500) as i64;
        self.timeouts();
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
        self.check_shards_caught_up();
    }

    // -----------------------------------------------------------------------------------
    // Feeding both systems

    /// An input about `conn`: to the reference, then to `conn`'s shard, whose commands are
    /// then carried out.
    fn input_for(&mut self, conn: ConnId, input: Input) {
        let at = self.at();
        self.reference.handle(at, input.clone());
        self.collect_reference();
        let shard = self.shard_of(conn);
        self.shards[shard].handle(at, input);
        self.pump();
    }

    /// The answer to request `request` of `conn`'s shard; the reference gets the same answer
    /// to the request paired with it, if there is one (none once `conn` diverged).
    fn answer(&mut self, conn: ConnId, request: RequestId, input: impl Fn(RequestId) -> Input) {
        let at = self.at();
        if let Some(paired) = self.requests.remove(&(conn, request)) {
            self.reference.handle(at, input(paired));
            self.collect_reference();
        }
        let shard = self.shard_of(conn);
        self.shards[shard].handle(at, input(request));
        self.pump();
    }

    /// An input for every shard (a batch, a device map, shutdown).
    fn broadcast(&mut self, input: Input) {
        let at = self.at();
        self.reference.handle(at, input.clone());
        self.collect_reference();
        for shard in &mut self.shards {
            shard.handle(at, input.clone());
        }
        self.pump();
    }

    /// `Timeout` to every hub whose deadline has come (as the shell's timer does), then the
    /// write-timeout judgement.
    fn timeouts(&mut self) {
        let at = self.at();
        if self.reference.poll_timeout().is_some_and(|t| t <= at) {
            self.reference.handle(at, Input::Timeout);
            self.collect_reference();
        }
        let mut any = false;
        for shard in &mut self.shards {
            if shard.poll_timeout().is_some_and(|t| t <= at) {
                shard.handle(at, Input::Timeout);
                any = true;
            }
        }
        if any {
            self.trace.record(format_args!("timeout {}", self.now));
            self.pump();
        }
        self.check_write_timeouts();
    }

    /// Takes every command of the reference into the per-connection lists the shards'
    /// commands are compared with.
    fn collect_reference(&mut self) {
        while let Some(command) = self.reference.poll_command() {
            let (conn, got, request) = match command {
                Command::Send { conn, frame } => (conn, Got::Frame(frame), None),
                Command::Close { conn, code, reason } => (conn, Got::Close(code, reason), None),
                Command::Authorize {
                    request,
                    conn,
                    topic,
                } => (conn, Got::Authorize(topic), Some(request)),
                Command::LoadSnapshot {
                    request,
                    conn,
                    topic,
                    devices,
                } => (conn, Got::LoadSnapshot(topic, devices), Some(request)),
                Command::VerifyToken { conn, token } => (conn, Got::VerifyToken(token), None),
            };
            let expected = self.expected.entry(conn).or_default();
            if !expected.diverged {
                expected.queue.push_back((got, request));
            }
        }
    }

    /// A shard gave `conn` this: it must be what the reference gave it next. A shard's
    /// request is paired with the reference's here.
    fn compare(&mut self, conn: ConnId, got: Got, request: Option<RequestId>) {
        let expected = self.expected.entry(conn).or_default();
        if expected.diverged {
            return;
        }
        match expected.queue.pop_front() {
            Some((want, paired)) if want == got => {
                if let (Some(request), Some(paired)) = (request, paired) {
                    self.requests.insert((conn, request), paired);
                }
            }
            want => {
                expected.diverged = true;
                expected.queue.clear();
                let want = want.map_or("nothing".to_owned(), |(w, _)| w.to_string());
                let shard = self.shard_of(conn);
                let shards = self.shards.len();
                self.violation(
                    LiveViolationKind::ShardDiverged,
                    format!(
                        "{conn} (shard {shard} of {shards}) got {got}; the single-shard reference gave {want}"
                    ),
                );
            }
        }
    }

    /// Once every command is carried out, the shards have given each connection all that
    /// the reference gave it.
    fn check_shards_caught_up(&mut self) {
        let behind: Vec<(ConnId, String)> = self
            .expected
            .iter()
            .filter(|(_, e)| !e.diverged)
            .filter_map(|(conn, e)| e.queue.front().map(|(w, _)| (*conn, w.to_string())))
            .collect();
        for (conn, want) in behind {
            if let Some(expected) = self.expected.get_mut(&conn) {
                expected.diverged = true;
                expected.queue.clear();
            }
            let shard = self.shard_of(conn);
            let shards = self.shards.len();
            self.violation(
                LiveViolationKind::ShardDiverged,
                format!(
                    "{conn} (shard {shard} of {shards}) got nothing more; the single-shard reference gave {want}"
                ),
            );
        }
    }

    /// Carries out every command the shards have, feeding fast clients as it goes.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.shards.len() {
                while let Some(command) = self.shards[i].poll_command() {
                    any = true;
                    self.execute(command);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Send { conn, frame } => {
                self.trace.record(format_args!(
                    "send {conn} {} {:x}",
                    frame.len(),
                    fingerprint(frame.bytes())
                ));
                self.compare(conn, Got::Frame(frame.clone()), None);
                let backpressure = self.config.backpressure_threshold_bytes;
                let now = self.now;
                let Some(client) = self.clients.get_mut(&conn).filter(|c| !c.closed) else {
                    self.violation(LiveViolationKind::AfterClose, format!("send to {conn}"));
                    return;
                };
                let was_empty = client.queue.is_empty();
                if was_empty {
                    client.stalled_since = Some(now);
                }
                client.queued += frame.len() as u64;
                client.queue.push_back(frame);
                let fast = client.reader == Reader::Fast;
                if client.queued > backpressure + QUEUE_SLACK && !client.over_bound {
                    client.over_bound = true;
                    let queued = client.queued;
                    self.violation(
                        LiveViolationKind::QueueUnbounded,
                        format!("{conn} holds {queued} bytes"),
                    );
                }
                if fast {
                    self.drain(conn, u64::MAX);
                } else if was_empty {
                    // The write attempt: a socket whose client does not read takes nothing.
                    // (With bytes already waiting the shell waits for the socket to take
                    // some before it tries again.)
                    self.input_for(conn, Input::Written { conn, bytes: 0 });
                }
            }
            Command::Close { conn, code, reason } => {
                self.trace
                    .record(format_args!("close {conn} {code} {reason}"));
                self.compare(conn, Got::Close(code, reason), None);
                if code == close_code::TRY_AGAIN_LATER {
                    self.slow_closes += 1;
                }
                let (now, timeout) = (self.now, self.config.write_timeout_ms);
                let Some(client) = self.clients.get_mut(&conn).filter(|c| !c.closed) else {
                    self.violation(LiveViolationKind::AfterClose, format!("close {conn}"));
                    return;
                };
                client.closed = true;
                client.queue.clear();
                let stalled_since = client.stalled_since.take();
                if reason == close_reason::WRITE_TIMEOUT
                    && stalled_since.is_none_or(|s| now - s < timeout as i64)
                {
                    self.violation(
                        LiveViolationKind::WriteTimeoutEarly,
                        format!(
                            "{conn} closed at {now} for the write timeout ({timeout} ms); its socket stalled since {stalled_since:?}"
                        ),
                    );
                }
            }
            Command::VerifyToken { conn, token } => {
                self.trace.record(format_args!("verify token {conn}"));
                self.compare(conn, Got::VerifyToken(token), None);
                // The model's clients hold no tokens: any `auth` is refused, which changes
                // nothing (contract section 5).
                let refused = Input::TokenVerified {
                    conn,
                    result: Err(TokenRefused("the model verifies no tokens".into())),
                };
                self.input_for(conn, refused);
            }
            Command::Authorize {
                request,
                conn,
                topic,
            } => {
                self.trace
                    .record(format_args!("authorize {conn} {request} {topic}"));
                self.compare(conn, Got::Authorize(topic), Some(request));
                let due = self.step + self.rng.range(0, 3);
                self.pending_auth
                    .push((due, conn, request, topic.event_id()));
            }
            Command::LoadSnapshot {
                request,
                conn,
                topic,
                devices,
            } => {
                self.trace.record(format_args!(
                    "load snapshot {conn} {request} {topic} {devices:?}"
                ));
                self.compare(
                    conn,
                    Got::LoadSnapshot(topic, devices.clone()),
                    Some(request),
                );
                let due = self.step + self.rng.range(0, 4);
                self.pending_snapshots.push((due, conn, request, devices));
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Clients

    /// The client reads up to `budget` bytes of whole frames, and the hub is told after
    /// each one.
    fn drain(&mut self, conn: ConnId, budget: u64) {
        let mut left = budget;
        loop {
            let now = self.now;
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
            let Some(frame) = client.queue.pop_front() else {
                return;
            };
            client.queued -= len;
            client.stalled_since = (!client.queue.is_empty()).then_some(now);
            let mut broken = Vec::new();
            match frame.opcode() {
                Some(Opcode::Text) => broken = client.view.receive(frame.payload(), &self.faulty),
                Some(Opcode::Ping) => client.pongs_owed += 1,
                Some(Opcode::Pong) => {}
                other => broken.push((
                    LiveViolationKind::Malformed,
                    format!("a {other:?} frame of {len} bytes"),
                )),
            }
            for (kind, detail) in broken {
                self.violation(kind, format!("{conn}: {detail}"));
            }
            self.input_for(conn, Input::Written { conn, bytes: len });
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
                stalled_since: None,
                timeout_missed: false,
            },
        );
        self.input_for(
            conn,
            Input::Connected {
                conn,
                principal,
                expires_at: None,
            },
        );
    }

    fn disconnect(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        self.trace.record(format_args!("disconnect {conn}"));
        if let Some(client) = self.clients.get_mut(&conn) {
            client.closed = true;
            client.queue.clear();
            client.stalled_since = None;
        }
        self.input_for(conn, Input::Closed { conn });
    }

    fn client_says(&mut self, conn: ConnId, message: String) {
        self.trace.record(format_args!("{conn} says {message}"));
        self.input_for(conn, text(conn, message));
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

    /// A message the hub answers without a subscription: a JSON ping, garbage, a binary
    /// message, a WebSocket ping.
    fn send_garbage(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let frame = match self.rng.below(5) {
            0 => r#"{"type":"ping"}"#,
            1 => r#"{"type":"dance"}"#,
            2 => "not json",
            3 => {
                self.trace.record(format_args!("{conn} sends binary"));
                let frame = Ok(ClientFrame::Binary);
                self.input_for(conn, Input::Frame { conn, frame });
                return;
            }
            _ => {
                self.trace.record(format_args!("{conn} pings"));
                let frame = Ok(ClientFrame::Ping(Bytes::from_static(b"are you there")));
                self.input_for(conn, Input::Frame { conn, frame });
                return;
            }
        };
        self.client_says(conn, frame.to_owned());
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
                let frame = Ok(ClientFrame::Pong);
                self.input_for(conn, Input::Frame { conn, frame });
            }
        }
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

    // -----------------------------------------------------------------------------------
    // The shell's look-ups

    /// `all`: answer every pending request now, successfully (the quiet phase).
    fn answer_authorizations(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_auth)
            .into_iter()
            .partition(|(d, ..)| all || *d <= step);
        self.pending_auth = later;
        for (_, conn, request, event) in due {
            if !all && self.rng.chance(0.05) {
                self.trace
                    .record(format_args!("authorization failed {conn} {request}"));
                self.answer(conn, request, |request| Input::Visibility {
                    request,
                    visibility: Err(LookupFailed("the events table is away".to_owned())),
                });
            } else {
                let visibility = self
                    .events
                    .iter()
                    .find(|(e, _)| *e == event)
                    .map_or(Visibility::Unknown, |(_, v)| *v);
                self.trace.record(format_args!(
                    "authorization {conn} {request} {visibility:?}"
                ));
                self.answer(conn, request, |request| Input::Visibility {
                    request,
                    visibility: Ok(visibility),
                });
            }
        }
    }

    fn answer_snapshots(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_snapshots)
            .into_iter()
            .partition(|(d, ..)| all || *d <= step);
        self.pending_snapshots = later;
        for (_, conn, request, devices) in due {
            if !all && self.rng.chance(0.05) {
                self.trace
                    .record(format_args!("snapshot failed {conn} {request}"));
                self.answer(conn, request, |request| Input::Snapshot {
                    request,
                    rows: Err(LookupFailed("the positions table is away".to_owned())),
                });
            } else {
                let rows: Vec<WirePosition> = devices
                    .iter()
                    .filter_map(|d| self.store.get(d).cloned())
                    .collect();
                self.trace.record(format_args!(
                    "snapshot {conn} {request} {:?}",
                    rows.iter()
                        .map(|r| (&r.device_id, r.ts))
                        .collect::<Vec<_>>()
                ));
                self.answer(conn, request, |request| Input::Snapshot {
                    request,
                    rows: Ok(rows.clone()),
                });
            }
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

    // -----------------------------------------------------------------------------------
    // The device map and the stream

    /// The current map, to the ingest and (one `Arc`) to every shard.
    fn send_map(&mut self) {
        let map = self.map.clone();
        self.trace
            .record(format_args!("map v{} {map:?}", self.map_version));
        let map = Arc::new(DeviceMap::new(self.map_version, map));
        self.ingest
            .handle(self.at(), IngestInput::DeviceMap(Arc::clone(&map)));
        self.broadcast(Input::DeviceMap(map));
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
        self.send_map();
    }

    /// One stream read: judged once by the ingest, its batch to every shard.
    fn read(&mut self, entries: Vec<(EntryId, Option<Bytes>)>) {
        self.trace.record(format_args!(
            "positions {:?}",
            entries
                .iter()
                .map(|(id, p)| (id.to_string(), p.as_deref().map(fingerprint)))
                .collect::<Vec<_>>()
        ));
        let at = self.at();
        if self.reference.reads_positions() {
            let positions: Vec<Position> = entries
                .iter()
                .filter_map(|(_, payload)| decode_position(payload.as_deref()?).ok())
                .collect();
            self.reference.read_positions(at, &positions);
            for shard in &mut self.shards {
                shard.read_positions(at, &positions);
            }
        }
        self.ingest.handle(at, IngestInput::Entries(entries));
        while let Some(batch) = self.ingest.poll_batch() {
            self.broadcast(Input::Batch(batch));
        }
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
        // `{:?}` prints the shortest text that reads back as the same `f64`, as JSON does.
        let payload = format!(
            r#"{{"device_id":"{device}","timestamp":{ts},"latitude":{lat:?},"longitude":{lon:?},"satellites":{satellites},"speed":{speed:?},"angle":90.0}}"#
        );
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
        self.read(batch);
    }

    fn next_entry(&mut self) -> EntryId {
        self.entry_seq += 1;
        EntryId::new(self.now as u64, self.entry_seq)
    }

    /// Orphans are counted whatever else is wrong with the record (faulty, duplicate).
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

    // -----------------------------------------------------------------------------------
    // Judging

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

    /// Right after the hubs were told the time: no connection whose socket has held bytes
    /// and taken none for the write timeout is still open (reported once per connection).
    fn check_write_timeouts(&mut self) {
        let (now, timeout) = (self.now, self.config.write_timeout_ms as i64);
        let missed: Vec<(ConnId, i64)> = self
            .clients
            .iter_mut()
            .filter(|(_, c)| !c.closed && !c.timeout_missed)
            .filter_map(|(id, c)| {
                let since = c.stalled_since.filter(|s| now - s >= timeout)?;
                c.timeout_missed = true;
                Some((*id, since))
            })
            .collect();
        for (conn, since) in missed {
            self.violation(
                LiveViolationKind::WriteTimeoutMissed,
                format!(
                    "{conn} still open at {now}: its socket has taken nothing since {since} ({} ms, the write timeout is {timeout} ms)",
                    now - since
                ),
            );
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
            self.read(batch);
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
        let counted = self.ingest.stats().orphan_records;
        if counted != self.orphans {
            self.violation(
                LiveViolationKind::OrphanCount,
                format!("ingest counted {counted}, the stream had {}", self.orphans),
            );
        }
        self.trace.record(format_args!("shutdown"));
        self.broadcast(Input::Shutdown);
        self.check_shards_caught_up();
        let sharded = self.shard_counters();
        let reference = self.reference.counters();
        if sharded != reference {
            self.violation(
                LiveViolationKind::ShardDiverged,
                format!(
                    "the shards' counters add up to {sharded:?}; the reference's are {reference:?}"
                ),
            );
        }
    }

    fn shard_counters(&self) -> LiveStats {
        self.shards
            .iter()
            .map(SimHub::counters)
            .fold(LiveStats::default(), add)
    }

    fn finish(self, seed: u64) -> LiveReport {
        LiveReport {
            seed,
            trace_hash: self.trace.hash(),
            trace_tail: self.trace.tail(),
            stats: self.shard_counters(),
            ingest: self.ingest.stats(),
            shards: self.shards.len(),
            write_timeout_ms: self.config.write_timeout_ms,
            frames: self.clients.values().map(|c| c.view.frames).sum(),
            slow_closes: self.slow_closes,
            violations: self.violations,
        }
    }
}
