//! The live path driven through a seeded run: a stream of positions (duplicates, late
//! uploads, faulty fixes, garbage, orphans) judged once by the real [`Ingest`], whose
//! batches go to every shard; clients that connect (anonymous, or with a token that expires
//! during the run or after it), subscribe, renew their token (`auth`) and leave, read fast,
//! slowly or not at all, and now and then send a burst of about their message budget;
//! authorization, token and snapshot answers that come late or fail; events made private
//! (the private one public) for a while; a positions store that lags behind the stream; and
//! device-to-event map versions.
//!
//! History (contract section 5.1): the store ([`super::store`]) holds every non-faulty fix
//! zero to six steps after it was published (late uploads the live path dropped too) and
//! answers every read truthfully from its rows: a snapshot's newest row per device, a
//! trail's sample, a resume's rows after `since` (stopping one past the maximum), a replay's
//! snapshot and pages. Subscriptions now and then ask for a trail; clients that read leave a
//! topic (`unsubscribe`, or a disconnect and a new connection zero to three steps later) and
//! come back to it with `since`; in two runs out of three clients start replays of stored
//! windows, pause and play them, change their speed, seek and stop them.
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
//!   reference's;
//! - a resumed snapshot (not `truncated`) holds, per device the model follows (a member of
//!   the event since the client asked), exactly the fixes after `since` the live path
//!   accepted and the stored rows it was answered with that the live path never accepted
//!   (late uploads), in `ts` order; the live positions that follow are exactly what the
//!   live path accepts afterwards, newer than the snapshot's last (part of it, in order,
//!   where the hub may have conflated: a slow reader, positions parked), and what the client
//!   saw before it left agrees; a truncated one holds exactly the newest position per
//!   device, and only with more than the maximum to send;
//! - a trail's head is its device's newest fix, its points stored or accepted fixes, oldest
//!   first, within the window, at most the maximum;
//! - a replay sends, after its snapshot (each device's newest stored row at its start), every
//!   stored position of its window after its start exactly once, in key order, each when
//!   the model's clock (its start plus the time since the snapshot times the speed, paused
//!   time not counted) has reached it, then `replay_end` once the clock reached `to`; it
//!   never holds more than the read-ahead bound; and when the run is quiet every replay of
//!   a client that reads has ended.
//!
//! Only the hub whose deadline is due is told the time, as in the shell (unless
//! [`LiveOptions::per_shard_timer`] is off: then every hub is told at each deadline of any,
//! which a spurious `Timeout` must leave without effect). The single-shard reference, which
//! holds every connection's deadlines, is woken more often than a shard: a replay's pace
//! must not depend on that (it did, before the hub brought every replay's clock up at each
//! input).
//!
//! Per connection the model also keeps its own copy of what the hub must know (contract
//! section 5), never asking the hub: the token's claims and `exp`, a token bucket of the
//! message rate (in thousandths of a message, refilled per millisecond), the bad messages,
//! and the subscriptions (asked for, held, re-check requests outstanding). With it:
//! - every client message is taken from the model's bucket, and the shard's answer to it is
//!   judged: over the budget, `limit_exceeded` (no topic) and nothing else, or nothing at
//!   all for a WebSocket ping; within it, the answer the protocol gives (a pong, an
//!   authorization request or `limit_exceeded` for a topic over the subscription limit,
//!   `unsubscribed`, a token verification, `bad_request`); the connection is closed with
//!   1008 at its `max_bad_messages`-th bad message (`bad_request`s and messages over the
//!   rate), never before;
//! - a connection is closed with 4001 only at or after its token's current `exp`, and is no
//!   longer open once the hub has been told a time past it;
//! - a renewed token is answered `{"type":"auth","exp":<seconds>}` and every held
//!   subscription is looked up again at once; a refused one gets `unauthorized` alone and
//!   the old `exp` stands;
//! - a held subscription is looked up again within the re-check interval (judged when the
//!   hub is told the time), and every answer is judged as it is handed over, with the
//!   claims and the visibility of that moment: a subscription's own answer gives
//!   `subscribed`, `forbidden` or the look-up failure; a re-check that no longer allows a
//!   held subscription ends it with `forbidden` at once (so an anonymous client subscribed to
//!   an event made private gets `forbidden` within the re-check interval plus the answer's
//!   delay; the checker sees that nothing of the topic follows), one that allows it or
//!   failed changes nothing, and an answer the hub no longer waits for does nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use processor_core::live::{
    close_code, close_reason, text, Command, ConnId, DeviceMap, Grant, HistoryQuery, Ingest,
    IngestInput, IngestStats, Input, LiveConfig, LiveStats, LookupFailed, Principal, ReplayKey,
    RequestId, TokenRefused, Visibility,
};
use processor_core::stream::EntryId;
use processor_core::websocket::{ClientFrame, Frame, Opcode};
use processor_core::wire::server::WirePosition;
use processor_core::wire::Topic;
use processor_core::{decode_position, Position, UnixMillis};

use processor_core::live::client_view::{Asked, ClientView, Reading};

use super::checker::{
    judge_resumed, not_faulty, resumed_track, LiveViolation, LiveViolationKind, ReplayModel,
    ReplayPhase,
};
use super::defect::{LiveDefect, SimHub};
use super::store::ModelStore;
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
/// The message rates a seed draws from (messages per second, in bursts of as many): low
/// enough that the clients' bursts go over it now and then.
const RATE_MIN: u64 = 5;
const RATE_MAX: u64 = 20;
/// The payload of a client's WebSocket ping, echoed in the pong.
const PING_PAYLOAD: &[u8] = b"are you there";
/// Replay speeds a client asks for: binary fractions and whole numbers, so that the clock
/// (event time, milliseconds, as `f64`) adds up exactly however often a hub is told the
/// time; with a speed such as 0.1 a shard and the single-shard reference, told the time at
/// different moments, could round a deadline a millisecond apart.
const REPLAY_SPEEDS: [f64; 7] = [0.5, 1.0, 2.0, 4.0, 16.0, 64.0, 1_000.0];
/// Replay ids a client uses: few, so that a replay is now and then started again by id.
const REPLAY_IDS: [&str; 3] = ["r1", "r2", "r3"];
/// How long the quiet phase lets running replays play out, at most (simulated time).
const REPLAY_QUIET_MS: i64 = 60_000;

#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    pub defect: LiveDefect,
    /// Keep this many trace records as text, for a failure report (0: hash only).
    pub trace_keep: usize,
    /// Whether clients start replays: `None` draws it from the seed (two runs in three).
    pub replays: Option<bool>,
    /// No history at all: no resumes, trails or replays (the planted defects of the live
    /// path before history need none, and run at the cost they had).
    pub without_history: bool,
    /// Tell only the hubs whose deadline it is the time (as the shell's per-shard timers
    /// do), instead of every hub at each deadline in runs with replays.
    pub per_shard_timer: bool,
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
    /// The message rate the run used.
    pub max_messages_per_s: u32,
    /// Tokens sent in `auth` and verified: renewed, refused.
    pub renewals: u64,
    pub refusals: u64,
    /// Times an event's visibility changed.
    pub visibility_changes: u64,
    /// Client messages over the model's budget.
    pub over_rate: u64,
    /// Resumed snapshots judged: complete ones, truncated ones; of the complete ones, how
    /// many held a stored row the live path had not accepted (a late upload).
    pub resumes: u64,
    pub truncated_resumes: u64,
    pub resumes_with_late_rows: u64,
    /// Times a resumed subscription was judged again at the end of a step, live.
    pub resumes_followed: u64,
    /// Snapshots with trails judged.
    pub trails: u64,
    /// Replays granted, ended (`replay_end`), positions they sent, pauses, seeks and
    /// speed changes acted on.
    pub replays: u64,
    pub replays_ended: u64,
    pub replay_positions: u64,
    /// Of those, sent to clients that read slowly.
    pub replay_positions_slow: u64,
    pub replay_steers: u64,
    pub replay_seeks: u64,
    /// The run started replays (and so, unless `per_shard_timer`, told every hub the time
    /// at each deadline).
    pub replays_on: bool,
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
    /// The model's side of the connection, judged against what the hub does.
    model: ConnModel,
    /// The `since` of each topic last subscribed with one: a resume leaves out the devices
    /// with nothing after it (the client has what it had of them).
    since: BTreeMap<String, i64>,
}

/// What a client's token grants, as the model holds it: its own rule (contract section 5),
/// never the hub's. The hub gets the same claims as a `Principal` built from their text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claims {
    Anonymous,
    Token { events: BTreeSet<Uuid>, admin: bool },
}

impl Claims {
    /// Public events to everyone; private ones to an admin and to a token naming them; an
    /// event that does not exist to nobody.
    fn allow(&self, event: Uuid, visibility: Visibility) -> bool {
        match visibility {
            Visibility::Public => true,
            Visibility::Unknown => false,
            Visibility::Private => match self {
                Claims::Anonymous => false,
                Claims::Token { events, admin } => *admin || events.contains(&event),
            },
        }
    }
}

/// A subscription as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelSub {
    /// The client's `subscribe` was acted on; its authorization request is unanswered.
    Authorizing(RequestId),
    /// Granted (`subscribed` sent): looked up again at least every re-check interval.
    Held {
        /// Its snapshot load, while unanswered.
        load: Option<RequestId>,
        /// Its snapshot load, for good: which subscription this is.
        origin: Option<RequestId>,
        /// When its event's visibility was last looked up (or it was granted).
        checked: i64,
        /// A missed re-check was reported.
        missed: bool,
    },
}

/// Per connection: the token's claims and deadline, the message budget, the bad messages,
/// the subscriptions.
#[derive(Debug)]
struct ConnModel {
    claims: Claims,
    exp: Option<i64>,
    expiry_missed: bool,
    /// The token bucket in thousandths of a message, as of `bucket_at`.
    bucket: u64,
    bucket_at: i64,
    bad: u32,
    subs: BTreeMap<Topic, ModelSub>,
    /// Re-check requests unanswered: every authorization request but those a `subscribe`
    /// or a `replay` asked for (an answer to a subscription's own request that was
    /// superseded is ignored, a re-check's applies to whatever subscription of its topic is
    /// held when it comes).
    rechecks: BTreeSet<RequestId>,
    /// Replays by id, from the hub's acting on `replay` until it is done with them.
    replays: BTreeMap<String, ReplayModel>,
    /// While a `replay` is being judged: the id and the event's topic its look-up is for.
    replay_asking: Option<(String, Topic)>,
    /// Replay look-ups unanswered, by request: the replay's id.
    replay_auths: BTreeMap<RequestId, String>,
}

impl ConnModel {
    /// Takes one message at `now` from a bucket refilled at `per_s` a second and holding
    /// as many; false when it is empty (less than one whole message in it).
    fn take(&mut self, per_s: u64, now: i64) -> bool {
        let elapsed = u64::try_from(now - self.bucket_at).unwrap_or(0);
        self.bucket_at = self.bucket_at.max(now);
        // A second refills `per_s` messages: `per_s` thousandths per millisecond.
        self.bucket = (self.bucket + elapsed * per_s).min(per_s * 1_000);
        if self.bucket < 1_000 {
            return false;
        }
        self.bucket -= 1_000;
        true
    }
}

/// The history a `subscribe` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asks {
    Nothing,
    /// `trail_s`.
    Trail(u64),
    /// `since`.
    Since(i64),
}

/// A `replay` message.
#[derive(Debug, Clone)]
struct ReplayAsk {
    id: &'static str,
    event: Uuid,
    from: i64,
    to: i64,
    speed: f64,
}

/// A `replay_control` message.
#[derive(Debug, Clone)]
struct Steer {
    id: &'static str,
    speed: Option<f64>,
    paused: Option<bool>,
    seek: Option<i64>,
}

/// A client message, as the model predicts the hub's answer to it.
#[derive(Debug, Clone)]
enum Said {
    Ping,
    Subscribe(Topic, Asks),
    Unsubscribe(Topic),
    Auth(String),
    Garbage(&'static str),
    Binary,
    WsPing,
    Replay(ReplayAsk),
    ReplayControl(Steer),
    StopReplay(&'static str),
}

/// What the hub must answer a client message with, first.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Nothing at all (a WebSocket ping over the rate).
    Nothing,
    /// `limit_exceeded` with no topic: over the rate.
    RateLimited,
    Pong,
    WsPong,
    Authorize(Topic),
    TopicLimit(Topic),
    Unsubscribed(Topic),
    Verify(String),
    BadRequest,
    /// A replay's look-up of its event.
    ReplayAuthorize(Topic),
    /// `limit_exceeded` for `replay:<id>`: the connection runs as many replays as it may.
    ReplayLimit(String),
    /// A `replay_control` for a running replay: nothing of its own (what the clock lets
    /// out, and a seek's snapshot load, may follow).
    Steered,
    /// `unsubscribed` for `replay:<id>`.
    ReplayUnsubscribed(String),
}

/// What an authorization answer must do, by the model's claims and subscriptions.
#[derive(Debug, Clone, PartialEq)]
enum AuthEffect {
    /// The connection is closed: nothing to judge.
    Closed,
    /// The answer to a subscription's own request: `subscribed` (allowed), `forbidden`
    /// (not), or the look-up failure (`None`).
    Initial(Option<bool>),
    /// A re-check of a held subscription: `forbidden` when it no longer allows it, else
    /// nothing.
    Recheck { revoke: bool },
    /// An answer the hub no longer waits for (the subscription ended or started over).
    Ignored,
    /// A replay's look-up: `subscribed` and its snapshot load (allowed), `forbidden` (not)
    /// or the look-up failure (`None`), for `replay:<id>`.
    Replay(String, Option<bool>),
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
    LoadSnapshot(Topic, Vec<String>, HistoryQuery),
    VerifyToken(String),
    ReplaySnapshot(Vec<String>, UnixMillis),
    ReplayPage(Vec<String>, ReplayKey, UnixMillis, usize),
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
            Got::LoadSnapshot(topic, devices, history) => {
                write!(f, "load snapshot {topic} {devices:?} {history:?}")
            }
            Got::VerifyToken(_) => write!(f, "verify token"),
            Got::ReplaySnapshot(devices, at) => {
                write!(f, "load replay snapshot {devices:?} at {at:?}")
            }
            Got::ReplayPage(devices, after, to, limit) => write!(
                f,
                "load replay page {devices:?} after {after:?} to {to:?} limit {limit}"
            ),
        }
    }
}

/// One thing a shard did for a connection, with the request it named (if any).
type Did = (Got, Option<RequestId>);

/// The first thing a hub did in answer to something, for a violation's text (formatted only
/// then).
struct Shown<'a>(Option<&'a Got>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(got) => got.fmt(f),
            None => f.write_str("nothing"),
        }
    }
}

/// A resumed subscription, followed from the client's `subscribe` with `since`.
#[derive(Debug)]
struct Watch {
    since: i64,
    /// Per device, the `ts` the client read of the topic before it left.
    before: BTreeMap<String, Vec<i64>>,
    /// The map version when it was asked for.
    version: u64,
    /// Its snapshot, once answered complete.
    following: Option<Following>,
    /// The live part may have gaps: the client reads slowly, or the hub parked positions
    /// of the connection since the snapshot (a batch brought it more than the conflate
    /// threshold before it was told what the socket took), and one may have replaced
    /// another.
    parked: bool,
}

/// A snapshot load asked for, answered at step `due`.
struct PendingSnapshot {
    due: u64,
    conn: ConnId,
    request: RequestId,
    devices: Vec<String>,
    history: HistoryQuery,
    /// For a resume: per device, how many fixes the live path had accepted when it was
    /// asked for (what arrives while it loads is the rest).
    marks: BTreeMap<String, usize>,
}

/// A snapshot load being answered, for its judgement.
#[derive(Clone, Copy)]
struct Load<'a> {
    request: RequestId,
    /// The devices it was asked for (the event's when the subscription was granted).
    devices: &'a [String],
    history: HistoryQuery,
    /// The rows it was answered with.
    rows: &'a [WirePosition],
    /// For a resume: per device, the fixes accepted when it was asked for.
    marks: &'a BTreeMap<String, usize>,
}

/// A resumed subscription's complete snapshot.
#[derive(Debug)]
struct Following {
    /// The snapshot's load: which subscription it is.
    load: RequestId,
    /// Per device, what the snapshot held (judged exact when it went out) and how many
    /// fixes of the device the live path had accepted then.
    devices: BTreeMap<String, (Vec<i64>, usize)>,
}

/// A client that left to resume on a new connection.
struct Reconnect {
    reader: Reader,
    claims: Claims,
    topic: Topic,
    since: i64,
    before: BTreeMap<String, Vec<i64>>,
}

/// A replay load asked for.
#[derive(Debug, Clone)]
enum ReplayLoad {
    Snapshot(Vec<String>, UnixMillis),
    Page(Vec<String>, ReplayKey, UnixMillis, usize),
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
    /// The map version of each (device, event) pair's last membership change.
    changed: BTreeMap<(String, Uuid), u64>,
    newest: BTreeMap<String, i64>,
    faulty: BTreeSet<(String, i64)>,
    orphans: u64,
    last_ts: BTreeMap<String, i64>,
    late: Vec<(u64, Fix)>,
    /// What Postgres holds: every non-faulty fix some steps after it was published.
    store: ModelStore,
    store_queue: Vec<(u64, Fix)>,
    /// Per device, the `ts` of every fix the live path accepted (of a device in some event,
    /// non-faulty, newer than the last it accepted of the device), in order.
    accepted: BTreeMap<String, Vec<i64>>,
    pending_auth: Vec<(u64, ConnId, RequestId, Topic)>,
    pending_snapshots: Vec<PendingSnapshot>,
    pending_replay_loads: Vec<(u64, ConnId, RequestId, ReplayLoad)>,
    /// Resumed subscriptions followed, by connection and topic.
    watches: BTreeMap<(ConnId, Topic), Watch>,
    /// Clients that left to come back with `since`, and the step they come back at.
    reconnects: Vec<(u64, Reconnect)>,
    /// The watch of the resume being said, until its `subscribe` is judged.
    resuming: Option<Watch>,
    /// Clients resume and ask for trails in this run.
    history: bool,
    /// Clients start replays in this run.
    replays_on: bool,
    /// Every hub is told the time at each deadline of any (see [`Live::timeouts`]).
    shared_timer: bool,
    /// Events whose visibility changed, and at which step it changes back.
    visibility_back: Vec<(u64, usize)>,
    /// Token verifications asked for and not answered yet.
    pending_tokens: Vec<(u64, ConnId, String)>,
    /// What each token sent in `auth` will be found to grant (`None`: refused).
    tokens: BTreeMap<String, Option<Claims>>,
    next_token: u64,
    /// While the model judges one input: the connection and what its shard did for it.
    capture: Option<(ConnId, Vec<Did>)>,
    entry_seq: u64,
    slow_closes: u64,
    renewals: u64,
    refusals: u64,
    visibility_changes: u64,
    over_rate: u64,
    resumes: u64,
    truncated_resumes: u64,
    resumes_with_late_rows: u64,
    resumes_followed: u64,
    trails: u64,
    replays: u64,
    replays_ended: u64,
    replay_positions: u64,
    replay_positions_slow: u64,
    replay_steers: u64,
    replay_seeks: u64,
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
        // Low enough that bursts go over it; the model keeps its own token bucket. The
        // visibility re-checks run at their default pace (5 s).
        max_messages_per_s: rng.range(RATE_MIN, RATE_MAX) as u32,
        // Small, so that trails are thinned, resumes are now and then truncated and a
        // replay reads many pages.
        trail_max_points: rng.range(2, 8) as usize,
        resume_max_positions: rng.range(6, 40) as usize,
        replay_read_ahead: rng.range(2, 12) as usize,
        // Every look-up goes to the model, which judges what each answer does (the hub's
        // cache of visibilities is judged by core/tests/live.rs and, at its default, by the
        // network layer's instances).
        visibility_cache_ms: 0,
        ..LiveConfig::default()
    };
    let shards = rng.range(2, 3) as usize;
    let replays_on = match options.replays {
        _ if options.without_history => false,
        Some(on) => on,
        None => rng.below(3) > 0,
    };
    let mut live = Live::new(&mut rng, config, shards, options, replays_on);
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
    }
}

impl Live {
    fn new(
        rng: &mut SimRng,
        config: LiveConfig,
        shards: usize,
        options: &LiveOptions,
        replays_on: bool,
    ) -> Live {
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
            changed: BTreeMap::new(),
            newest: BTreeMap::new(),
            faulty: BTreeSet::new(),
            orphans: 0,
            last_ts: BTreeMap::new(),
            late: Vec::new(),
            store: ModelStore::default(),
            store_queue: Vec::new(),
            accepted: BTreeMap::new(),
            pending_auth: Vec::new(),
            pending_snapshots: Vec::new(),
            pending_replay_loads: Vec::new(),
            watches: BTreeMap::new(),
            reconnects: Vec::new(),
            resuming: None,
            history: !options.without_history,
            replays_on,
            shared_timer: replays_on && !options.per_shard_timer,
            visibility_back: Vec::new(),
            pending_tokens: Vec::new(),
            tokens: BTreeMap::new(),
            next_token: 0,
            capture: None,
            entry_seq: 0,
            slow_closes: 0,
            renewals: 0,
            refusals: 0,
            visibility_changes: 0,
            over_rate: 0,
            resumes: 0,
            truncated_resumes: 0,
            resumes_with_late_rows: 0,
            resumes_followed: 0,
            trails: 0,
            replays: 0,
            replays_ended: 0,
            replay_positions: 0,
            replay_positions_slow: 0,
            replay_steers: 0,
            replay_seeks: 0,
        };
        live.trace.record(format_args!(
            "{shards} shards, write timeout {} ms, {} messages/s, replays {replays_on}",
            live.config.write_timeout_ms, live.config.max_messages_per_s
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
        let target = self.now + self.rng.range(200, 2_500) as i64;
        self.advance_to(target);
        self.answer_pongs();
        self.answer_tokens(false);
        self.visibility_due(false);
        self.store_due(false);
        self.reconnects_due(false);
        self.answer_replay_loads(false);
        for _ in 0..self.rng.range(1, 3) {
            match self.rng.below(117) {
                0..=32 => self.publish(),
                33..=38 => self.connect(),
                39..=40 => self.disconnect(),
                41..=54 => self.subscribe(),
                55..=58 => self.unsubscribe(),
                59..=70 => self.answer_authorizations(false),
                71..=82 => self.answer_snapshots(false),
                83..=98 => self.drain_slow(),
                99..=101 => self.change_map(),
                102..=103 => self.send_garbage(),
                104 => self.send_auth(),
                105 => self.change_visibility(),
                106..=107 => self.burst(),
                108..=110 if self.history => self.resume(),
                111..=112 if self.replays_on => self.start_replay(),
                113..=115 if self.replays_on => self.steer_replay(),
                116 if self.replays_on => self.stop_replay(),
                _ => {}
            }
        }
        self.check_fast_clients();
        self.check_resumes();
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

    /// Time passes up to `target`: at each deadline of a hub on the way (as the shell's
    /// timer wakes at it), the hubs whose deadline it is are told the time, and the
    /// deadline judgements made. The model's own token deadlines wake every hub too (a
    /// spurious `Timeout` does nothing), so that a hub whose expiry deadline is late is
    /// seen still holding the connection after it was told a time past the `exp`.
    fn advance_to(&mut self, target: i64) {
        let mut fired = i64::MIN;
        loop {
            let hubs = std::iter::once(&self.reference)
                .chain(&self.shards)
                .filter_map(SimHub::poll_timeout)
                .map(|t| t.as_i64())
                .min();
            let expiry = self
                .clients
                .values()
                .filter(|c| !c.closed && !c.model.expiry_missed)
                .filter_map(|c| c.model.exp)
                .filter(|e| *e > fired)
                .min();
            match [hubs, expiry].into_iter().flatten().min() {
                // A deadline that stays due after its `Timeout` would wake the shell's
                // timer for ever; the time moves on (and what was due is judged).
                Some(t) if t <= target && t > fired => {
                    self.now = self.now.max(t);
                    fired = self.now;
                    self.timeouts(expiry == Some(t));
                }
                _ => break,
            }
        }
        self.now = target;
        self.timeouts(false);
    }

    /// `Timeout` to every hub whose deadline has come (as the shell's timer does; to all
    /// with `all`), then the judgements of what is due by now: write timeouts, token
    /// expiries, re-checks.
    ///
    /// With the shared timer, every hub is told the time when any one's deadline comes (a
    /// spurious `Timeout` must do nothing): a replay's clock depends on when its hub is
    /// told the time (it counts the time since it was last told as played when a page
    /// arrives or the client catches up), and the single-shard reference, which holds
    /// every connection's deadlines, would be told it more often than the replay's shard.
    fn timeouts(&mut self, all: bool) {
        let at = self.at();
        let all = all
            || self.shared_timer
                && std::iter::once(&self.reference)
                    .chain(&self.shards)
                    .any(|h| h.poll_timeout().is_some_and(|t| t <= at));
        if all || self.reference.poll_timeout().is_some_and(|t| t <= at) {
            self.reference.handle(at, Input::Timeout);
            self.collect_reference();
        }
        let mut any = false;
        for shard in &mut self.shards {
            if all || shard.poll_timeout().is_some_and(|t| t <= at) {
                shard.handle(at, Input::Timeout);
                any = true;
            }
        }
        if any {
            self.trace.record(format_args!("timeout {}", self.now));
            self.pump();
        }
        self.check_write_timeouts();
        self.check_expiries();
        self.check_rechecks();
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
                    history,
                } => (
                    conn,
                    Got::LoadSnapshot(topic, devices, history),
                    Some(request),
                ),
                Command::VerifyToken { conn, token } => (conn, Got::VerifyToken(token), None),
                // The simulated replays ask for no trail (`history` is `Latest`).
                Command::LoadReplaySnapshot {
                    request,
                    conn,
                    devices,
                    at,
                    ..
                } => (conn, Got::ReplaySnapshot(devices, at), Some(request)),
                Command::LoadReplayPage {
                    request,
                    conn,
                    devices,
                    after,
                    to,
                    limit,
                } => (
                    conn,
                    Got::ReplayPage(devices, after, to, limit),
                    Some(request),
                ),
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
        self.note_parked();
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
                self.captured(conn, Got::Frame(frame.clone()), None);
                if let Some(message) = replay_message(&frame) {
                    self.replay_frame_sent(conn, &message);
                }
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
                self.captured(conn, Got::Close(code, reason), None);
                if code == close_code::TRY_AGAIN_LATER {
                    self.slow_closes += 1;
                }
                let (now, timeout) = (self.now, self.config.write_timeout_ms);
                let Some(client) = self.clients.get_mut(&conn).filter(|c| !c.closed) else {
                    self.violation(LiveViolationKind::AfterClose, format!("close {conn}"));
                    return;
                };
                client.closed = true;
                let exp = client.model.exp;
                if code == close_code::TOKEN_EXPIRED && exp.is_none_or(|e| now < e) {
                    self.violation(
                        LiveViolationKind::ExpiryEarly,
                        format!(
                            "{conn} closed at {now} with {code} {reason:?}; its token expires at {exp:?}"
                        ),
                    );
                }
                let Some(client) = self.clients.get_mut(&conn) else {
                    return;
                };
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
            Command::LoadReplaySnapshot {
                request,
                conn,
                devices,
                at,
                ..
            } => {
                self.trace.record(format_args!(
                    "replay snapshot load {conn} {request} at {at:?}"
                ));
                let got = Got::ReplaySnapshot(devices.clone(), at);
                self.compare(conn, got.clone(), Some(request));
                self.captured(conn, got, Some(request));
                self.replay_load_asked(conn, request, ReplayLoad::Snapshot(devices, at));
            }
            Command::LoadReplayPage {
                request,
                conn,
                devices,
                after,
                to,
                limit,
            } => {
                self.trace.record(format_args!(
                    "replay page load {conn} {request} after {after:?} limit {limit}"
                ));
                let got = Got::ReplayPage(devices.clone(), after.clone(), to, limit);
                self.compare(conn, got.clone(), Some(request));
                self.captured(conn, got, Some(request));
                self.replay_load_asked(conn, request, ReplayLoad::Page(devices, after, to, limit));
            }
            Command::VerifyToken { conn, token } => {
                self.trace.record(format_args!("verify token {conn}"));
                self.compare(conn, Got::VerifyToken(token.clone()), None);
                self.captured(conn, Got::VerifyToken(token.clone()), None);
                // Answered zero to two steps later, at the start of a step.
                let due = self.step + self.rng.range(0, 2);
                self.pending_tokens.push((due, conn, token));
            }
            Command::Authorize {
                request,
                conn,
                topic,
            } => {
                self.trace
                    .record(format_args!("authorize {conn} {request} {topic}"));
                self.compare(conn, Got::Authorize(topic), Some(request));
                self.captured(conn, Got::Authorize(topic), Some(request));
                // A held subscription's visibility looked up again (unless this is the
                // request of a `subscribe`, which the model takes back when it judges it, or
                // the look-up of a `replay` being judged, which is no re-check at all).
                let now = self.now;
                if let Some(model) = self.clients.get_mut(&conn).map(|c| &mut c.model) {
                    match model.replay_asking.take() {
                        Some((id, asked)) if asked == topic => {
                            model.replay_auths.insert(request, id);
                        }
                        asking => {
                            model.replay_asking = asking;
                            model.rechecks.insert(request);
                            if let Some(ModelSub::Held { checked, .. }) = model.subs.get_mut(&topic)
                            {
                                *checked = now;
                            }
                        }
                    }
                }
                let due = self.step + self.rng.range(0, 3);
                self.pending_auth.push((due, conn, request, topic));
            }
            Command::LoadSnapshot {
                request,
                conn,
                topic,
                devices,
                history,
            } => {
                self.trace.record(format_args!(
                    "load snapshot {conn} {request} {topic} {devices:?} {history:?}"
                ));
                let got = Got::LoadSnapshot(topic, devices.clone(), history);
                self.compare(conn, got.clone(), Some(request));
                self.captured(conn, got, Some(request));
                let due = self.step + self.rng.range(0, 4);
                let marks = match history {
                    HistoryQuery::Since { .. } => self
                        .accepted
                        .iter()
                        .map(|(d, a)| (d.clone(), a.len()))
                        .collect(),
                    _ => BTreeMap::new(),
                };
                self.pending_snapshots.push(PendingSnapshot {
                    due,
                    conn,
                    request,
                    devices,
                    history,
                    marks,
                });
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
                Some(Opcode::Text) => {
                    let faulty = &self.faulty;
                    let allowed = |device: &str, ts: i64, _| not_faulty(faulty, device, ts);
                    broken = client
                        .view
                        .receive(frame.payload(), &allowed)
                        .into_iter()
                        .map(|(breach, detail)| (LiveViolationKind::View(breach), detail))
                        .collect();
                }
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
        let reader = match self.rng.below(10) {
            0..=4 => Reader::Fast,
            5..=7 => Reader::Slow,
            _ => Reader::Stalled,
        };
        let claims = match self.rng.below(3) {
            0 => Claims::Anonymous,
            1 => Claims::Token {
                events: [self.events[1].0].into_iter().collect(),
                admin: false,
            },
            _ => Claims::Token {
                events: BTreeSet::new(),
                admin: true,
            },
        };
        self.connect_as(reader, claims);
    }

    /// A new connection of a client that reads as `reader` with a token of `claims` (a
    /// fresh `exp`).
    fn connect_as(&mut self, reader: Reader, claims: Claims) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let exp = (claims != Claims::Anonymous).then(|| self.draw_exp());
        let principal = self.principal(&claims);
        self.trace.record(format_args!(
            "connect {conn} {reader:?} {principal:?} exp {exp:?}"
        ));
        let per_s = u64::from(self.config.max_messages_per_s);
        self.clients.insert(
            conn,
            Client {
                reader,
                view: ClientView::new(Reading::Buffered),
                queue: VecDeque::new(),
                queued: 0,
                closed: false,
                pongs_owed: 0,
                over_bound: false,
                stalled_since: None,
                timeout_missed: false,
                since: BTreeMap::new(),
                model: ConnModel {
                    claims,
                    exp,
                    expiry_missed: false,
                    bucket: per_s * 1_000,
                    bucket_at: self.now,
                    bad: 0,
                    subs: BTreeMap::new(),
                    rechecks: BTreeSet::new(),
                    replays: BTreeMap::new(),
                    replay_asking: None,
                    replay_auths: BTreeMap::new(),
                },
            },
        );
        self.input_for(
            conn,
            Input::Connected {
                conn,
                principal,
                expires_at: exp.map(UnixMillis),
            },
        );
        conn
    }

    /// A token's `exp` (whole seconds, as JWTs carry it): half within the run (15 s to
    /// 200 s from now), half long after it.
    fn draw_exp(&mut self) -> i64 {
        let ahead = if self.rng.chance(0.5) {
            self.rng.range(15_000, 200_000)
        } else {
            3_600_000
        };
        (self.now + ahead as i64) / 1_000 * 1_000
    }

    /// The claims as the shell would read them from a token: event ids in either case, now
    /// and then an entry that is no event id at all, a role that is not admin.
    fn principal(&mut self, claims: &Claims) -> Principal {
        match claims {
            Claims::Anonymous => Principal::Anonymous,
            Claims::Token { events, admin } => {
                let mut texts: Vec<String> = events
                    .iter()
                    .map(|e| {
                        let text = e.to_string();
                        if self.rng.chance(0.3) {
                            text.to_uppercase()
                        } else {
                            text
                        }
                    })
                    .collect();
                if self.rng.chance(0.2) {
                    texts.push("not-an-event".to_owned());
                }
                let role = if *admin {
                    Some("admin")
                } else if self.rng.chance(0.3) {
                    Some("viewer")
                } else {
                    None
                };
                Principal::from_claims(texts.iter().map(String::as_str), role)
            }
        }
    }

    /// Claims a renewed token carries: any of the events (the private one or not), or
    /// admin.
    fn draw_claims(&mut self) -> Claims {
        if self.rng.chance(0.2) {
            return Claims::Token {
                events: BTreeSet::new(),
                admin: true,
            };
        }
        let events = self
            .events
            .iter()
            .map(|(e, _)| *e)
            .filter(|_| self.rng.chance(0.4))
            .collect();
        Claims::Token {
            events,
            admin: false,
        }
    }

    fn disconnect(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        self.disconnect_conn(conn);
    }

    fn disconnect_conn(&mut self, conn: ConnId) {
        self.trace.record(format_args!("disconnect {conn}"));
        if let Some(client) = self.clients.get_mut(&conn) {
            client.closed = true;
            client.queue.clear();
            client.stalled_since = None;
        }
        self.input_for(conn, Input::Closed { conn });
    }

    fn random_topic(&mut self) -> Topic {
        let event = match self.rng.below(8) {
            0 => self.unknown_event,
            _ => self.events[self.rng.index(self.events.len())].0,
        };
        Topic(event)
    }

    /// A subscription, now and then with a trail.
    fn subscribe(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let topic = self.random_topic();
        let asks = if self.history && self.rng.chance(0.25) {
            Asks::Trail(self.rng.range(5, 600))
        } else {
            Asks::Nothing
        };
        self.say(conn, Said::Subscribe(topic, asks));
    }

    fn unsubscribe(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let topic = self.random_topic();
        self.say(conn, Said::Unsubscribe(topic));
    }

    /// A message the hub answers without a subscription: a JSON ping, garbage, a binary
    /// message, a WebSocket ping.
    fn send_garbage(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let said = self.random_message();
        self.say(conn, said);
    }

    fn random_message(&mut self) -> Said {
        match self.rng.below(5) {
            0 => Said::Ping,
            1 => Said::Garbage(r#"{"type":"dance"}"#),
            2 => Said::Garbage("not json"),
            3 => Said::Binary,
            _ => Said::WsPing,
        }
    }

    /// A token in an `auth` message; what the shell will find it grants is decided now
    /// (a renewal with fresh claims, or a refusal), its `exp` when it is verified.
    fn send_auth(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let said = self.new_token();
        self.say(conn, said);
    }

    fn new_token(&mut self) -> Said {
        self.next_token += 1;
        let token = format!("token-{}", self.next_token);
        let grant = self.rng.chance(0.7).then(|| self.draw_claims());
        self.tokens.insert(token.clone(), grant);
        Said::Auth(token)
    }

    /// A client sends about as many messages as its budget at once (some a few
    /// milliseconds apart): pings mostly, the odd subscription, token or bad message.
    fn burst(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let per_s = u64::from(self.config.max_messages_per_s);
        let n = self.rng.range(per_s - 2, per_s + 8);
        self.trace.record(format_args!("{conn} bursts {n}"));
        for _ in 0..n {
            if self.clients.get(&conn).is_none_or(|c| c.closed) {
                return;
            }
            if self.rng.chance(0.1) {
                self.now += self.rng.range(1, 80) as i64;
            }
            let said = match self.rng.below(20) {
                0..=10 => Said::Ping,
                11..=13 => Said::WsPing,
                14..=15 => Said::Subscribe(self.random_topic(), Asks::Nothing),
                16 => Said::Unsubscribe(self.random_topic()),
                17..=18 => self.random_message(),
                _ => self.new_token(),
            };
            self.say(conn, said);
        }
    }

    /// A public event made private (the private one made public) for a while: it changes
    /// back some steps later.
    fn change_visibility(&mut self) {
        let i = self.rng.index(self.events.len());
        if self.visibility_back.iter().any(|(_, j)| *j == i) {
            return;
        }
        let back = self.step + self.rng.range(3, 20);
        self.visibility_back.push((back, i));
        self.flip_visibility(i);
    }

    /// Events whose change is over change back.
    fn visibility_due(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.visibility_back)
            .into_iter()
            .partition(|(d, _)| all || *d <= step);
        self.visibility_back = later;
        for (_, i) in due {
            self.flip_visibility(i);
        }
    }

    fn flip_visibility(&mut self, i: usize) {
        let (event, visibility) = &mut self.events[i];
        *visibility = match visibility {
            Visibility::Public => Visibility::Private,
            _ => Visibility::Public,
        };
        self.visibility_changes += 1;
        let (event, visibility) = (*event, *visibility);
        self.trace
            .record(format_args!("event {event} now {visibility:?}"));
    }

    /// The client sends `said`; the model takes it from its own token bucket, predicts the
    /// hub's first answer (and whether it is the bad message that closes the connection),
    /// and judges what the connection's shard did with it.
    fn say(&mut self, conn: ConnId, said: Said) {
        let per_s = u64::from(self.config.max_messages_per_s);
        let max_subs = self.config.max_subscriptions;
        let max_bad = self.config.max_bad_messages.max(1);
        let now = self.now;
        let Some(client) = self.clients.get_mut(&conn).filter(|c| !c.closed) else {
            return;
        };
        let max_replays = self.config.replay_max_per_connection;
        let model = &mut client.model;
        let within = model.take(per_s, now);
        let expect = match &said {
            Said::WsPing if !within => Expect::Nothing,
            _ if !within => Expect::RateLimited,
            Said::Ping => Expect::Pong,
            Said::WsPing => Expect::WsPong,
            Said::Subscribe(topic, _) => {
                if model.subs.contains_key(topic) || model.subs.len() < max_subs {
                    Expect::Authorize(*topic)
                } else {
                    Expect::TopicLimit(*topic)
                }
            }
            Said::Unsubscribe(topic) => Expect::Unsubscribed(*topic),
            Said::Auth(token) => Expect::Verify(token.clone()),
            Said::Garbage(_) | Said::Binary => Expect::BadRequest,
            Said::Replay(ask) => {
                let others = model.replays.keys().filter(|id| *id != ask.id).count();
                if others >= max_replays {
                    Expect::ReplayLimit(ask.id.to_owned())
                } else {
                    Expect::ReplayAuthorize(Topic(ask.event))
                }
            }
            Said::ReplayControl(steer) if model.replays.contains_key(steer.id) => Expect::Steered,
            Said::ReplayControl(_) => Expect::BadRequest,
            Said::StopReplay(id) => Expect::ReplayUnsubscribed(format!("replay:{id}")),
        };
        let bad = matches!(expect, Expect::RateLimited | Expect::BadRequest);
        if bad {
            model.bad += 1;
        }
        let last_bad = bad && model.bad >= max_bad;
        // What the hub is about to do to a replay, the model does first: the commands it
        // gives in answer are judged against the replay's new state as they come.
        match (&said, &expect) {
            (Said::Replay(ask), Expect::ReplayAuthorize(topic)) => {
                model.replays.remove(ask.id);
                model.replay_asking = Some((ask.id.to_owned(), *topic));
                client
                    .view
                    .requested(&format!("replay:{}", ask.id), Asked::Newest);
            }
            (Said::ReplayControl(steer), Expect::Steered) => {
                if let Some(replay) = model.replays.get_mut(steer.id) {
                    replay.steer(now, steer.speed, steer.paused);
                    if let Some(at) = steer.seek {
                        replay.seek(at, now);
                    }
                }
            }
            _ => {}
        }
        if let Expect::Authorize(topic) = expect {
            let asked = match &said {
                Said::Subscribe(_, Asks::Since(_)) => Asked::Since,
                _ => Asked::Newest,
            };
            client.view.requested(&topic.to_string(), asked);
            match &said {
                Said::Subscribe(_, Asks::Since(since)) => {
                    client.since.insert(topic.to_string(), *since)
                }
                _ => client.since.remove(&topic.to_string()),
            };
        }
        if !within {
            self.over_rate += 1;
        }
        // A resumed subscription is followed from its `subscribe` on; any other
        // `subscribe` or `unsubscribe` of the topic acted on ends it.
        if let Said::Subscribe(topic, _) | Said::Unsubscribe(topic) = &said {
            if within {
                self.watches.remove(&(conn, *topic));
            }
            if let (Said::Subscribe(_, Asks::Since(_)), Expect::Authorize(_)) = (&said, &expect) {
                if let Some(watch) = self.resuming.take() {
                    self.watches.insert((conn, *topic), watch);
                }
            }
        }
        self.resuming = None;
        let input = match &said {
            Said::Ping => text(conn, r#"{"type":"ping"}"#),
            Said::Subscribe(topic, asks) => {
                let extra = match asks {
                    Asks::Nothing => String::new(),
                    Asks::Trail(s) => format!(r#","trail_s":{s}"#),
                    Asks::Since(ms) => format!(r#","since":{ms}"#),
                };
                text(
                    conn,
                    format!(r#"{{"type":"subscribe","topic":"{topic}"{extra}}}"#),
                )
            }
            Said::Replay(ask) => text(
                conn,
                format!(
                    r#"{{"type":"replay","id":"{}","event":"{}","from":{},"to":{},"speed":{:?}}}"#,
                    ask.id, ask.event, ask.from, ask.to, ask.speed
                ),
            ),
            Said::ReplayControl(steer) => {
                let mut fields = format!(r#"{{"type":"replay_control","id":"{}""#, steer.id);
                if let Some(speed) = steer.speed {
                    fields.push_str(&format!(r#","speed":{speed:?}"#));
                }
                if let Some(paused) = steer.paused {
                    fields.push_str(&format!(r#","paused":{paused}"#));
                }
                if let Some(seek) = steer.seek {
                    fields.push_str(&format!(r#","seek":{seek}"#));
                }
                fields.push('}');
                text(conn, fields)
            }
            Said::StopReplay(id) => text(
                conn,
                format!(r#"{{"type":"unsubscribe","topic":"replay:{id}"}}"#),
            ),
            Said::Unsubscribe(topic) => text(
                conn,
                format!(r#"{{"type":"unsubscribe","topic":"{topic}"}}"#),
            ),
            Said::Auth(token) => text(conn, format!(r#"{{"type":"auth","token":"{token}"}}"#)),
            Said::Garbage(garbage) => text(conn, *garbage),
            Said::Binary => Input::Frame {
                conn,
                frame: Ok(ClientFrame::Binary),
            },
            Said::WsPing => Input::Frame {
                conn,
                frame: Ok(ClientFrame::Ping(Bytes::from_static(PING_PAYLOAD))),
            },
        };
        self.trace
            .record(format_args!("{conn} says {said:?} at {now}"));
        let got = self.capturing(conn, |live| live.input_for(conn, input));
        if let Some(client) = self.clients.get_mut(&conn) {
            client.model.replay_asking = None;
        }
        self.judge_answer(conn, &said, &expect, last_bad, &got);
    }

    /// Runs `f`, returning what the shards did for `conn` meanwhile, in order.
    fn capturing(&mut self, conn: ConnId, f: impl FnOnce(&mut Live)) -> Vec<Did> {
        self.capture = Some((conn, Vec::new()));
        f(self);
        self.capture.take().map(|(_, got)| got).unwrap_or_default()
    }

    fn captured(&mut self, conn: ConnId, got: Got, request: Option<RequestId>) {
        if let Some((watched, list)) = &mut self.capture {
            if *watched == conn {
                list.push((got, request));
            }
        }
    }

    /// The hub's answer to one client message against the model's prediction.
    fn judge_answer(
        &mut self,
        conn: ConnId,
        said: &Said,
        expect: &Expect,
        last_bad: bool,
        got: &[Did],
    ) {
        let per_s = self.config.max_messages_per_s;
        let first = got.first().map(|(g, _)| g);
        let shown = Shown(first);
        let rate_error = |g: &Got| {
            error_of(g).is_some_and(|(code, topic, message)| {
                code == "limit_exceeded"
                    && topic.is_none()
                    && message == format!("at most {per_s} messages per second")
            })
        };
        match expect {
            Expect::Nothing if !got.is_empty() => self.violation(
                LiveViolationKind::RateMisjudged,
                format!("{conn}: a WebSocket ping over the rate was answered: {shown}"),
            ),
            Expect::Nothing => {}
            Expect::Steered => self.judge_steer(conn, said, got, first.is_some_and(rate_error)),
            Expect::RateLimited => {
                let acted = got.iter().skip(1).any(|(g, _)| !incidental(g));
                if !first.is_some_and(rate_error) || acted {
                    self.violation(
                        LiveViolationKind::RateMisjudged,
                        format!(
                            "{conn}: {said:?} over the rate of {per_s}/s got {shown} ({} commands)",
                            got.len()
                        ),
                    );
                }
            }
            _ if first.is_none_or(rate_error) => self.violation(
                LiveViolationKind::RateMisjudged,
                format!("{conn}: {said:?} within the rate of {per_s}/s got {shown}"),
            ),
            _ => {
                if !first.is_some_and(|g| answers(expect, g)) {
                    self.violation(
                        LiveViolationKind::MisAnswered,
                        format!("{conn}: {said:?} got {shown}; expected {expect:?}"),
                    );
                }
            }
        }
        let closed = got.iter().any(|(g, _)| matches!(g, Got::Close(..)));
        let closed_for_bad = got.iter().any(|(g, _)| {
            matches!(g, Got::Close(close_code::POLICY_VIOLATION, r) if *r == close_reason::TOO_MANY_BAD_REQUESTS)
        });
        let bad = self.clients.get(&conn).map_or(0, |c| c.model.bad);
        if last_bad && !closed {
            self.violation(
                LiveViolationKind::BadMessageLimit,
                format!("{conn}: still open after its bad message number {bad} ({said:?})"),
            );
        } else if !last_bad && closed_for_bad {
            self.violation(
                LiveViolationKind::BadMessageLimit,
                format!("{conn}: closed for too many bad messages at {said:?}, its bad message count being {bad}"),
            );
        }
        // The model's subscriptions follow what the message did.
        let Some(model) = self.clients.get_mut(&conn).map(|c| &mut c.model) else {
            return;
        };
        match expect {
            Expect::Authorize(topic) => {
                let request = got.iter().find_map(|(g, r)| match g {
                    Got::Authorize(t) if t == topic => *r,
                    _ => None,
                });
                match request {
                    Some(request) => {
                        model.rechecks.remove(&request);
                        model.subs.insert(*topic, ModelSub::Authorizing(request));
                    }
                    None => {
                        model.subs.remove(topic);
                    }
                }
            }
            Expect::Unsubscribed(topic) => {
                model.subs.remove(topic);
            }
            Expect::ReplayAuthorize(topic) => {
                let request = got.iter().find_map(|(g, r)| match g {
                    Got::Authorize(t) if t == topic => *r,
                    _ => None,
                });
                if let (Said::Replay(ask), Some(request)) = (said, request) {
                    let replay =
                        ReplayModel::new(ask.id.to_owned(), ask.from, ask.to, ask.speed, request);
                    model.replays.insert(ask.id.to_owned(), replay);
                }
            }
            _ => {}
        }
    }

    /// A `replay_control` for a running replay: not refused for the rate, and a seek of a
    /// replay past its look-up loads the snapshot at the new time (clamped to `to`).
    fn judge_steer(&mut self, conn: ConnId, said: &Said, got: &[Did], refused: bool) {
        let Said::ReplayControl(steer) = said else {
            return;
        };
        if refused {
            let shown = Shown(got.first().map(|(g, _)| g));
            self.violation(
                LiveViolationKind::RateMisjudged,
                format!("{conn}: {said:?} within the rate got {shown}"),
            );
        }
        self.replay_steers += 1;
        let Some(at) = steer.seek else {
            return;
        };
        self.replay_seeks += 1;
        let Some(replay) = self
            .clients
            .get(&conn)
            .and_then(|c| c.model.replays.get(steer.id))
        else {
            return;
        };
        if matches!(replay.phase, ReplayPhase::Authorizing(_)) || replay.superseded {
            return;
        }
        let want = UnixMillis(at.min(replay.to));
        let loaded = got
            .iter()
            .any(|(g, _)| matches!(g, Got::ReplaySnapshot(_, t) if *t == want));
        if !loaded {
            self.violation(
                LiveViolationKind::MisAnswered,
                format!(
                    "{conn}: {said:?} got {} commands, no snapshot load at {want:?}",
                    got.len()
                ),
            );
        }
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
        for (_, conn, request, topic) in due {
            let visibility = if !all && self.rng.chance(0.05) {
                self.trace
                    .record(format_args!("authorization failed {conn} {request}"));
                None
            } else {
                // The event's visibility now (not when it was asked for).
                let event = topic.event_id();
                let visibility = self
                    .events
                    .iter()
                    .find(|(e, _)| *e == event)
                    .map_or(Visibility::Unknown, |(_, v)| *v);
                self.trace.record(format_args!(
                    "authorization {conn} {request} {visibility:?}"
                ));
                Some(visibility)
            };
            let effect = self.authorization_effect(conn, request, topic, visibility);
            let got = self.capturing(conn, |live| {
                live.answer(conn, request, |request| Input::Visibility {
                    request,
                    visibility: visibility
                        .ok_or_else(|| LookupFailed("the events table is away".to_owned())),
                })
            });
            self.judge_authorization(conn, topic, visibility, effect, &got);
        }
    }

    /// What the answer `visibility` (`None`: the look-up failed) to `conn`'s request
    /// `request` for `topic` must do, by the model's claims and subscriptions.
    fn authorization_effect(
        &mut self,
        conn: ConnId,
        request: RequestId,
        topic: Topic,
        visibility: Option<Visibility>,
    ) -> AuthEffect {
        let Some(model) = self
            .clients
            .get_mut(&conn)
            .filter(|c| !c.closed)
            .map(|c| &mut c.model)
        else {
            return AuthEffect::Closed;
        };
        let allowed = visibility.map(|v| model.claims.allow(topic.event_id(), v));
        if let Some(id) = model.replay_auths.remove(&request) {
            let Some(replay) = model
                .replays
                .get_mut(&id)
                .filter(|r| r.phase == ReplayPhase::Authorizing(request))
            else {
                return AuthEffect::Ignored;
            };
            // The model's replay moves first: the hub's snapshot load follows at once.
            if allowed == Some(true) {
                let event = topic.event_id();
                replay.phase = ReplayPhase::Loading;
                replay.devices = self
                    .map
                    .iter()
                    .filter(|(_, events)| events.contains(&event))
                    .map(|(d, _)| d.clone())
                    .collect();
                self.replays += 1;
            } else {
                model.replays.remove(&id);
            }
            return AuthEffect::Replay(id, allowed);
        }
        let recheck = model.rechecks.remove(&request);
        match model.subs.get(&topic) {
            Some(ModelSub::Authorizing(r)) if *r == request => AuthEffect::Initial(allowed),
            Some(ModelSub::Held { .. }) if recheck => AuthEffect::Recheck {
                revoke: allowed == Some(false),
            },
            _ => AuthEffect::Ignored,
        }
    }

    fn judge_authorization(
        &mut self,
        conn: ConnId,
        topic: Topic,
        visibility: Option<Visibility>,
        effect: AuthEffect,
        got: &[Did],
    ) {
        let now = self.now;
        let first = got.first().map(|(g, _)| g);
        let shown = Shown(first);
        let ends = |code: &str| {
            first.is_some_and(|g| {
                error_of(g).is_some_and(|(c, t, _)| c == code && t == Some(topic.to_string()))
            })
        };
        let (ok, kind, want, sub) = match effect {
            AuthEffect::Closed => return,
            AuthEffect::Replay(id, allowed) => {
                let replay_topic = format!("replay:{id}");
                let (ok, want) = match allowed {
                    Some(true) => (
                        first
                            .and_then(|g| control_message(g, "subscribed"))
                            .is_some_and(|m| {
                                m["type"] == "subscribed" && m["topic"] == replay_topic.as_str()
                            }),
                        "subscribed",
                    ),
                    Some(false) => (
                        first.and_then(error_of).is_some_and(|(c, t, _)| {
                            c == "forbidden" && t.as_deref() == Some(replay_topic.as_str())
                        }),
                        "forbidden",
                    ),
                    None => (
                        first.and_then(error_of).is_some_and(|(c, t, _)| {
                            c == "limit_exceeded" && t.as_deref() == Some(replay_topic.as_str())
                        }),
                        "limit_exceeded (the look-up failed)",
                    ),
                };
                if !ok {
                    self.violation(
                        LiveViolationKind::AuthorizationMisjudged,
                        format!(
                            "{conn}: {replay_topic} of {topic} answered {visibility:?} got {shown}; expected {want}"
                        ),
                    );
                }
                return;
            }
            AuthEffect::Initial(None) => (
                ends("limit_exceeded"),
                LiveViolationKind::AuthorizationMisjudged,
                "limit_exceeded (the look-up failed)",
                None,
            ),
            AuthEffect::Initial(Some(true)) => {
                let subscribed = first
                    .and_then(|g| control_message(g, "subscribed"))
                    .is_some_and(|m| {
                        m["type"] == "subscribed" && m["topic"] == topic.to_string().as_str()
                    });
                let load = got.iter().find_map(|(g, r)| match g {
                    Got::LoadSnapshot(t, ..) if *t == topic => *r,
                    _ => None,
                });
                (
                    subscribed,
                    LiveViolationKind::AuthorizationMisjudged,
                    "subscribed",
                    Some(ModelSub::Held {
                        load,
                        origin: load,
                        checked: now,
                        missed: false,
                    }),
                )
            }
            AuthEffect::Initial(Some(false)) => (
                ends("forbidden"),
                LiveViolationKind::AuthorizationMisjudged,
                "forbidden",
                None,
            ),
            AuthEffect::Recheck { revoke: true } => (
                ends("forbidden"),
                LiveViolationKind::RevocationMissed,
                "forbidden: the subscription is no longer allowed",
                None,
            ),
            AuthEffect::Recheck { revoke: false } | AuthEffect::Ignored => (
                got.is_empty(),
                LiveViolationKind::AuthorizationMisjudged,
                "nothing",
                self.clients
                    .get(&conn)
                    .and_then(|c| c.model.subs.get(&topic))
                    .cloned(),
            ),
        };
        if !ok {
            let claims = self.clients.get(&conn).map(|c| c.model.claims.clone());
            self.violation(
                kind,
                format!(
                    "{conn}: {topic} answered {visibility:?} ({effect:?}, claims {claims:?}) got {shown}; expected {want}"
                ),
            );
        }
        if let Some(model) = self.clients.get_mut(&conn).map(|c| &mut c.model) {
            match sub {
                Some(sub) => model.subs.insert(topic, sub),
                None => model.subs.remove(&topic),
            };
        }
    }

    fn answer_snapshots(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_snapshots)
            .into_iter()
            .partition(|p| all || p.due <= step);
        self.pending_snapshots = later;
        for PendingSnapshot {
            conn,
            request,
            devices,
            history,
            marks,
            ..
        } in due
        {
            // The subscription this load is for, if it is still the one held: it stays, or
            // ends when the load fails.
            let topic = self.clients.get(&conn).and_then(|c| {
                c.model.subs.iter().find_map(|(t, s)| match s {
                    ModelSub::Held { load, .. } if *load == Some(request) => Some(*t),
                    _ => None,
                })
            });
            let failed = !all && self.rng.chance(0.05);
            if let (Some(topic), Some(model)) =
                (topic, self.clients.get_mut(&conn).map(|c| &mut c.model))
            {
                if failed {
                    model.subs.remove(&topic);
                } else if let Some(ModelSub::Held { load, .. }) = model.subs.get_mut(&topic) {
                    *load = None;
                }
            }
            if failed {
                self.trace
                    .record(format_args!("snapshot failed {conn} {request}"));
                if let Some(topic) = topic {
                    self.watches.remove(&(conn, topic));
                }
                self.answer(conn, request, |request| Input::Snapshot {
                    request,
                    rows: Err(LookupFailed("the positions table is away".to_owned())),
                });
            } else {
                let rows = self.store.snapshot(&devices, history);
                self.trace.record(format_args!(
                    "snapshot {conn} {request} {:?}",
                    rows.iter()
                        .map(|r| (&r.device_id, r.ts))
                        .collect::<Vec<_>>()
                ));
                let got = self.capturing(conn, |live| {
                    live.answer(conn, request, |request| Input::Snapshot {
                        request,
                        rows: Ok(rows.clone()),
                    })
                });
                if let Some(topic) = topic {
                    let load = Load {
                        request,
                        devices: &devices,
                        history,
                        rows: &rows,
                        marks: &marks,
                    };
                    self.judge_history(conn, topic, &load, &got);
                }
            }
        }
    }

    /// Devices of `event` the history judgements look at: members since map version
    /// `since` (the subscription was granted after it).
    fn judged_devices(&self, event: Uuid, since: u64) -> Vec<String> {
        self.map
            .iter()
            .filter(|(d, events)| {
                events.contains(&event)
                    && self
                        .changed
                        .get(&((*d).clone(), event))
                        .is_none_or(|v| *v <= since)
            })
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// The snapshot a subscription with history got, as its shard sent it (`got`), judged
    /// against the model: a trail's points, a resume's positions.
    fn judge_history(&mut self, conn: ConnId, topic: Topic, load: &Load<'_>, got: &[Did]) {
        let Load {
            request,
            devices,
            history,
            rows,
            marks,
        } = *load;
        let name = topic.to_string();
        let Some(snapshot) = got.iter().find_map(|(g, _)| match g {
            Got::Frame(frame) if frame.payload().starts_with(br#"{"type":"snapshot""#) => {
                serde_json::from_slice::<serde_json::Value>(frame.payload())
                    .ok()
                    .filter(|v| v["topic"] == name.as_str())
            }
            _ => None,
        }) else {
            return;
        };
        let mut positions: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
        for p in snapshot["positions"].as_array().into_iter().flatten() {
            if let Some(device) = p["deviceId"].as_str() {
                positions.entry(device.to_owned()).or_default().push(p);
            }
        }
        let version = self
            .watches
            .get(&(conn, topic))
            .map_or(self.map_version, |w| w.version);
        // The snapshot's devices are those of the event when it was granted that are in it
        // still; the model follows those whose membership did not change meanwhile.
        let judged: Vec<String> = self
            .judged_devices(topic.event_id(), version)
            .into_iter()
            .filter(|d| devices.contains(d))
            .collect();
        match history {
            HistoryQuery::Latest => {}
            HistoryQuery::Trail { window_ms, .. } => {
                self.trails += 1;
                for device in &judged {
                    for p in positions.get(device).into_iter().flatten() {
                        if let Some(wrong) = self.trail_wrong(device, p, window_ms) {
                            self.violation(
                                LiveViolationKind::TrailWrong,
                                format!("{conn} {topic} {device}: {wrong}"),
                            );
                        }
                    }
                }
            }
            HistoryQuery::Since { since, .. } => {
                let since = since.as_i64();
                if self
                    .watches
                    .get(&(conn, topic))
                    .is_none_or(|w| w.since != since)
                {
                    return;
                }
                let ts_of = |device: &String| -> Vec<i64> {
                    positions
                        .get(device)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["ts"].as_i64())
                        .collect()
                };
                let empty = Vec::new();
                let accepted = |device: &String| self.accepted.get(device).unwrap_or(&empty);
                let mut broken = Vec::new();
                let truncated = snapshot["truncated"].as_bool() == Some(true);
                let total: usize = positions.values().map(Vec::len).sum();
                let max = self.config.resume_max_positions;
                if truncated {
                    self.truncated_resumes += 1;
                    for device in &judged {
                        // What the live path accepted, or a stored row newer still (one sent
                        // while the device was in no event).
                        let stored = rows.iter().filter(|r| r.device_id == *device).map(|r| r.ts);
                        let newest: Vec<i64> = accepted(device)
                            .last()
                            .copied()
                            .into_iter()
                            .chain(stored)
                            .max()
                            .into_iter()
                            .collect();
                        if ts_of(device) != newest {
                            broken.push((
                                LiveViolationKind::ResumeTruncated,
                                format!(
                                    "{device}: truncated resume holds {:?}; the newest is {newest:?}",
                                    ts_of(device)
                                ),
                            ));
                        }
                    }
                    // Truncated only with more than the maximum to send, or more than it
                    // arriving while the snapshot loaded (judged when no device joined or
                    // left the event since the client asked: what a device that left sent
                    // meanwhile was held all the same).
                    let event = topic.event_id();
                    let members = self.map.values().filter(|e| e.contains(&event)).count();
                    let stable = self
                        .changed
                        .iter()
                        .all(|((_, e), v)| *e != event || *v <= version);
                    if stable && members == judged.len() {
                        let mut all_after = 0usize;
                        let mut arrived = 0usize;
                        for device in &judged {
                            let extras = rows
                                .iter()
                                .filter(|r| r.device_id == *device && r.ts > since)
                                .map(|r| r.ts)
                                .filter(|ts| accepted(device).binary_search(ts).is_err())
                                .collect();
                            all_after += resumed_track(accepted(device), &extras, since).len();
                            arrived += accepted(device)
                                .len()
                                .saturating_sub(marks.get(device).copied().unwrap_or(0));
                        }
                        if all_after <= max && arrived <= max {
                            broken.push((
                                LiveViolationKind::ResumeTruncated,
                                format!(
                                    "truncated with {all_after} positions after {since} and {arrived} arriving while it loaded (at most {max})"
                                ),
                            ));
                        }
                    }
                    self.watches.remove(&(conn, topic));
                } else {
                    self.resumes += 1;
                    if total > max {
                        broken.push((
                            LiveViolationKind::ResumeMismatch,
                            format!("a complete resume of {total} positions (at most {max})"),
                        ));
                    }
                    let mut snapshots: BTreeMap<String, (Vec<i64>, usize)> = BTreeMap::new();
                    let mut late_rows = false;
                    for device in &judged {
                        let late: BTreeSet<i64> = rows
                            .iter()
                            .filter(|r| r.device_id == *device && r.ts > since)
                            .map(|r| r.ts)
                            .filter(|ts| accepted(device).binary_search(ts).is_err())
                            .collect();
                        let expected = resumed_track(accepted(device), &late, since);
                        if let Some(wrong) =
                            judge_resumed(device, since, &[], &ts_of(device), &expected, false)
                        {
                            broken.push((
                                LiveViolationKind::ResumeMismatch,
                                format!("snapshot: {wrong}"),
                            ));
                        }
                        late_rows |= !late.is_empty();
                        snapshots.insert(device.clone(), (expected, accepted(device).len()));
                    }
                    if late_rows {
                        self.resumes_with_late_rows += 1;
                    }
                    let fast = self
                        .clients
                        .get(&conn)
                        .is_some_and(|c| c.reader == Reader::Fast);
                    match self.watches.get_mut(&(conn, topic)) {
                        Some(watch) if broken.is_empty() => {
                            watch.following = Some(Following {
                                load: request,
                                devices: snapshots,
                            });
                            watch.parked = !fast;
                        }
                        _ => {
                            self.watches.remove(&(conn, topic));
                        }
                    }
                }
                for (kind, detail) in broken {
                    self.violation(kind, format!("{conn} {topic}: {detail}"));
                }
            }
        }
    }

    /// What is wrong with the trail of snapshot position `p` of `device`, if anything: its
    /// head must be the device's newest fix (accepted, or stored while it was in no event),
    /// its points stored or accepted fixes of the device, oldest first, in the window before
    /// the head, at most the maximum.
    fn trail_wrong(&self, device: &str, p: &serde_json::Value, window_ms: u64) -> Option<String> {
        let head = p["ts"].as_i64()?;
        let accepted = self.accepted.get(device).and_then(|a| a.last().copied());
        let newest = accepted.max(self.store.newest_ts(device));
        if newest != Some(head) {
            return Some(format!(
                "head {head}, the newest {newest:?} (accepted {accepted:?})"
            ));
        }
        let Some(trail) = p["trail"].as_array() else {
            return Some("no trail".to_owned());
        };
        let points: Vec<Option<i64>> = trail.iter().map(|t| t[0].as_i64()).collect();
        let start = head.saturating_sub(window_ms as i64);
        let max = self.config.trail_max_points;
        let known = |ts: i64| {
            self.store.has(device, ts)
                || self
                    .accepted
                    .get(device)
                    .is_some_and(|a| a.binary_search(&ts).is_ok())
        };
        let fine = points.len() <= max
            && points
                .iter()
                .all(|t| t.is_some_and(|t| t >= start && t < head && known(t)))
            && points.windows(2).all(|w| w[0] < w[1]);
        (!fine).then(|| {
            format!("trail {points:?} before {head} (window from {start}, at most {max} points)")
        })
    }

    /// The shell's token verifications due (`all`: every one, the quiet phase): a renewal
    /// with the claims decided when the token was sent and a fresh `exp`, or a refusal.
    fn answer_tokens(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_tokens)
            .into_iter()
            .partition(|(d, ..)| all || *d <= step);
        self.pending_tokens = later;
        for (_, conn, token) in due {
            let grant = self.tokens.remove(&token).flatten();
            let renewal = match grant {
                Some(claims) => {
                    let exp = self.draw_exp();
                    let principal = self.principal(&claims);
                    self.renewals += 1;
                    self.trace.record(format_args!(
                        "token of {conn} renewed: {principal:?} until {exp}"
                    ));
                    Some((claims, exp, principal))
                }
                None => {
                    self.refusals += 1;
                    self.trace.record(format_args!("token of {conn} refused"));
                    None
                }
            };
            let result = match &renewal {
                Some((_, exp, principal)) => Ok(Grant {
                    principal: principal.clone(),
                    expires_at: UnixMillis(*exp),
                }),
                None => Err(TokenRefused("the token has expired".to_owned())),
            };
            let held: Vec<Topic> = self
                .clients
                .get(&conn)
                .filter(|c| !c.closed)
                .map(|c| {
                    c.model
                        .subs
                        .iter()
                        .filter(|(_, s)| matches!(s, ModelSub::Held { .. }))
                        .map(|(t, _)| *t)
                        .collect()
                })
                .unwrap_or_default();
            let open = self.clients.get(&conn).is_some_and(|c| !c.closed);
            let got = self.capturing(conn, |live| {
                live.input_for(conn, Input::TokenVerified { conn, result })
            });
            if open {
                self.judge_token(conn, renewal.map(|(c, e, _)| (c, e)), &held, &got);
            }
        }
    }

    /// A renewal: `{"type":"auth","exp":<seconds>}` first, then every held subscription
    /// looked up again at once, and the new claims and deadline are the model's. A refusal:
    /// `unauthorized` (no topic) and nothing else; the old deadline stands.
    fn judge_token(
        &mut self,
        conn: ConnId,
        renewal: Option<(Claims, i64)>,
        held: &[Topic],
        got: &[Did],
    ) {
        let first = got.first().map(|(g, _)| g);
        let shown = Shown(first);
        let closed = got.iter().any(|(g, _)| matches!(g, Got::Close(..)));
        match renewal {
            Some((claims, exp)) => {
                let secs = exp / 1_000;
                let answered = first
                    .and_then(|g| control_message(g, "auth"))
                    .is_some_and(|m| m["type"] == "auth" && m["exp"].as_i64() == Some(secs));
                if !answered {
                    self.violation(
                        LiveViolationKind::TokenMisjudged,
                        format!("{conn}: a renewed token (exp {secs}) got {shown}"),
                    );
                }
                let rechecked: BTreeSet<Topic> = got
                    .iter()
                    .filter_map(|(g, _)| match g {
                        Got::Authorize(t) => Some(*t),
                        _ => None,
                    })
                    .collect();
                for topic in held {
                    if !closed && !rechecked.contains(topic) {
                        self.violation(
                            LiveViolationKind::RecheckMissed,
                            format!("{conn}: {topic} not looked up again after a renewed token"),
                        );
                    }
                }
                if let Some(model) = self.clients.get_mut(&conn).map(|c| &mut c.model) {
                    model.claims = claims;
                    model.exp = Some(exp);
                }
            }
            None => {
                let refused = first
                    .and_then(error_of)
                    .is_some_and(|(code, topic, _)| code == "unauthorized" && topic.is_none());
                let more = got.iter().skip(1).any(|(g, _)| !incidental(g));
                if !refused || more {
                    self.violation(
                        LiveViolationKind::TokenMisjudged,
                        format!(
                            "{conn}: a refused token got {shown} ({} commands)",
                            got.len()
                        ),
                    );
                }
            }
        }
    }

    /// The durable path, lagging: fixes become visible to snapshots some steps after they
    /// were published, every non-faulty one (late uploads the live path dropped too).
    fn store_due(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.store_queue)
            .into_iter()
            .partition(|(d, _)| all || *d <= step);
        self.store_queue = later;
        for (_, fix) in due {
            if !fix.faulty && self.store.insert(&fix.row) {
                self.trace
                    .record(format_args!("stored {} {}", fix.device, fix.ts));
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Resume

    /// A client that reads leaves a topic whose snapshot it had and comes back to it with
    /// `since`: on the same connection (`unsubscribe`, then `subscribe` again) or, after a
    /// disconnect, on a new one zero to three steps later. `since` is the smallest of the
    /// devices' newest `ts` it read (the protocol's advice: nothing is missed) or the `ts`
    /// of the last position it read (what a naive client sends: a device behind it misses
    /// what arrives meanwhile at or before it, as the protocol says).
    fn resume(&mut self) {
        let candidates: Vec<(ConnId, String)> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.closed && c.reader != Reader::Stalled)
            .flat_map(|(id, c)| {
                c.view
                    .live_topics()
                    .into_iter()
                    .filter(|t| c.view.last_read(t).is_some())
                    .map(move |t| (*id, t))
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (conn, name) = candidates[self.rng.index(candidates.len())].clone();
        let (Ok(topic), Some(client)) = (name.parse::<Topic>(), self.clients.get(&conn)) else {
            return;
        };
        let before = client.view.track(&name);
        let newest = before.values().filter_map(|ts| ts.last().copied()).min();
        let last = client.view.last_read(&name);
        let (reader, claims) = (client.reader, client.model.claims.clone());
        let Some(since) = (if self.rng.chance(0.5) { newest } else { last }) else {
            return;
        };
        let watch = Watch {
            since,
            version: self.map_version,
            before: before.clone(),
            following: None,
            parked: false,
        };
        if self.rng.chance(0.5) {
            self.trace
                .record(format_args!("{conn} resumes {topic} since {since}"));
            self.say(conn, Said::Unsubscribe(topic));
            self.resuming = Some(watch);
            self.say(conn, Said::Subscribe(topic, Asks::Since(since)));
        } else {
            self.trace.record(format_args!(
                "{conn} leaves to resume {topic} since {since}"
            ));
            self.disconnect_conn(conn);
            let back = self.step + self.rng.range(0, 3);
            self.reconnects.push((
                back,
                Reconnect {
                    reader,
                    claims,
                    topic,
                    since,
                    before,
                },
            ));
        }
    }

    /// Clients that left come back (`all`: every one, the quiet phase) and resume.
    fn reconnects_due(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reconnects)
            .into_iter()
            .partition(|(d, _)| all || *d <= step);
        self.reconnects = later;
        for (_, back) in due {
            let conn = self.connect_as(back.reader, back.claims);
            self.trace.record(format_args!(
                "{conn} comes back to {} since {}",
                back.topic, back.since
            ));
            self.resuming = Some(Watch {
                since: back.since,
                version: self.map_version,
                before: back.before,
                following: None,
                parked: false,
            });
            self.say(conn, Said::Subscribe(back.topic, Asks::Since(back.since)));
        }
    }

    /// Right after a shard took an input: a followed resume whose connection now has
    /// positions parked may lose some to conflation from now on.
    fn note_parked(&mut self) {
        let shards = self.shards.len() as u64;
        for ((conn, _), watch) in &mut self.watches {
            if watch.following.is_some() && !watch.parked {
                let shard = (conn.0 % shards) as usize;
                watch.parked = self.shards[shard].parks(*conn);
            }
        }
    }

    /// Every resumed subscription still held is, per device the model follows, exactly
    /// what the live path accepted after `since` (and the stored rows its snapshot had),
    /// or part of it, in order, without repeats, where it may have gaps; and it agrees with
    /// what the client saw before it left.
    fn check_resumes(&mut self) {
        let mut broken = Vec::new();
        let mut done = Vec::new();
        let empty = Vec::new();
        for ((conn, topic), watch) in &self.watches {
            let Some(Following {
                load,
                devices: snapshots,
            }) = &watch.following
            else {
                continue;
            };
            let held = self.clients.get(conn).filter(|c| {
                !c.closed
                    && matches!(c.model.subs.get(topic),
                        Some(ModelSub::Held { origin: Some(o), .. }) if o == load)
            });
            let Some(client) = held else {
                done.push((*conn, *topic));
                continue;
            };
            // A slow client may not have read the snapshot (nor `subscribed`) yet.
            let name = topic.to_string();
            if !client.view.is_live(&name) {
                continue;
            }
            self.resumes_followed += 1;
            let after = client.view.track(&name);
            for device in self.judged_devices(topic.event_id(), watch.version) {
                // What the snapshot held, then what the live path accepted since, newer
                // than the snapshot's last of the device (or `since`): nothing at or before
                // what the snapshot sent may follow it.
                let Some((snapshot, mark)) = snapshots.get(&device) else {
                    continue;
                };
                let floor = snapshot.last().copied().unwrap_or(watch.since);
                let accepted = self.accepted.get(&device).unwrap_or(&empty);
                let mut expected = snapshot.clone();
                expected.extend(
                    accepted[(*mark).min(accepted.len())..]
                        .iter()
                        .filter(|ts| **ts > floor),
                );
                let wrong = judge_resumed(
                    &device,
                    watch.since,
                    watch.before.get(&device).unwrap_or(&empty),
                    after.get(&device).unwrap_or(&empty),
                    &expected,
                    watch.parked,
                );
                if let Some(wrong) = wrong {
                    broken.push(format!("{conn} {topic}: {wrong}"));
                    done.push((*conn, *topic));
                    break;
                }
            }
        }
        for key in done {
            self.watches.remove(&key);
        }
        for detail in broken {
            self.violation(LiveViolationKind::ResumeMismatch, detail);
        }
    }

    // -----------------------------------------------------------------------------------
    // Replay

    /// The end of the window a replay may ask for: every fix with a `ts` at or before it
    /// is stored, and none will be published (new fixes are at most 800 ms old; late ones
    /// and those not stored yet are waiting in the model's queues).
    fn stored_until(&self) -> i64 {
        let waiting = self
            .late
            .iter()
            .chain(&self.store_queue)
            .map(|(_, f)| f.ts)
            .min()
            .unwrap_or(i64::MAX);
        (self.now - 1_000).min(waiting - 1)
    }

    /// A client starts a replay of a stored window (1 to 60 s, sometimes empty) of an
    /// event (a private one now and then), with one of three ids.
    fn start_replay(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let until = self.stored_until();
        let first = START_MS - 60_000;
        if until <= first {
            return;
        }
        let length = self.rng.range(1_000, 60_000) as i64;
        let to = self
            .rng
            .range_i64(first + length, until.max(first + length));
        let from = (to - length).max(first);
        let to = to.min(until);
        let event = self.events[self.rng.index(self.events.len())].0;
        let ask = ReplayAsk {
            id: REPLAY_IDS[self.rng.index(REPLAY_IDS.len())],
            event,
            from,
            to: to.max(from),
            speed: REPLAY_SPEEDS[self.rng.index(REPLAY_SPEEDS.len())],
        };
        self.say(conn, Said::Replay(ask));
    }

    /// A client steers one of its replays (or one it has not): pause or play, a new speed,
    /// a seek anywhere from a minute before `from` to past `to`.
    fn steer_replay(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let ids: Vec<(String, i64, i64, bool)> = self
            .clients
            .get(&conn)
            .map(|c| {
                c.model
                    .replays
                    .values()
                    .map(|r| (r.id.clone(), r.from, r.to, r.paused))
                    .collect()
            })
            .unwrap_or_default();
        let (id, from, to, paused) = match ids.len() {
            0 => (String::new(), START_MS, START_MS, false),
            n => ids[self.rng.index(n)].clone(),
        };
        let id = REPLAY_IDS
            .iter()
            .copied()
            .find(|i| *i == id)
            .unwrap_or(REPLAY_IDS[self.rng.index(REPLAY_IDS.len())]);
        let mut steer = Steer {
            id,
            speed: None,
            paused: None,
            seek: None,
        };
        match self.rng.below(4) {
            0 => steer.paused = Some(!paused),
            1 => steer.speed = Some(REPLAY_SPEEDS[self.rng.index(REPLAY_SPEEDS.len())]),
            2 => {
                steer.seek = Some(self.rng.range_i64(from - 60_000, to + 5_000).max(0));
            }
            _ => {
                steer.paused = Some(self.rng.chance(0.5));
                steer.speed = Some(REPLAY_SPEEDS[self.rng.index(REPLAY_SPEEDS.len())]);
                steer.seek = Some(self.rng.range_i64(from, to).max(0));
            }
        }
        self.say(conn, Said::ReplayControl(steer));
    }

    fn stop_replay(&mut self) {
        let Some(conn) = self.pick_open() else { return };
        let id = REPLAY_IDS[self.rng.index(REPLAY_IDS.len())];
        self.say(conn, Said::StopReplay(id));
    }

    /// A hub asked for a replay load: it is for one of the connection's replays in the
    /// state to want it (a snapshot at its start for its devices, a page after its cursor),
    /// within the read-ahead bound; it is answered zero to two steps later.
    fn replay_load_asked(&mut self, conn: ConnId, request: RequestId, load: ReplayLoad) {
        let read_ahead = self.config.replay_read_ahead;
        let mut broken = Vec::new();
        if let Some(model) = self.clients.get_mut(&conn).map(|c| &mut c.model) {
            let replay = model.replays.values_mut().find(|r| match &load {
                ReplayLoad::Snapshot(devices, at) => {
                    r.phase == ReplayPhase::Loading
                        && r.snapshot_load.is_none()
                        && r.devices == *devices
                        && r.start == at.as_i64()
                }
                ReplayLoad::Page(devices, after, to, _) => {
                    r.phase == ReplayPhase::Playing
                        && r.page_load.is_none()
                        && r.devices == *devices
                        && r.to == to.as_i64()
                        && r.cursor == (after.ts.as_i64(), after.device.clone())
                }
            });
            match (replay, &load) {
                (Some(replay), ReplayLoad::Snapshot(..)) => {
                    replay.snapshot_load = Some(request);
                    replay.superseded = false;
                }
                (Some(replay), ReplayLoad::Page(.., limit)) => {
                    if let Some(over) = replay.page_asked(request, *limit, read_ahead) {
                        broken.push((LiveViolationKind::ReplayReadAhead, over));
                    }
                }
                (None, _) => broken.push((
                    LiveViolationKind::ReplayMismatch,
                    format!(
                        "{load:?}: no replay of the connection wants it ({:?})",
                        model
                            .replays
                            .values()
                            .map(|r| (&r.id, r.phase, &r.devices, r.start, &r.cursor))
                            .collect::<Vec<_>>()
                    ),
                )),
            }
        }
        for (kind, detail) in broken {
            self.violation(kind, format!("{conn}: {detail}"));
        }
        let due = self.step + self.rng.range(0, 2);
        self.pending_replay_loads.push((due, conn, request, load));
    }

    /// Replay loads due (`all`: every one, successfully: the quiet phase), answered from
    /// the model store; now and then one fails.
    fn answer_replay_loads(&mut self, all: bool) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_replay_loads)
            .into_iter()
            .partition(|(d, ..)| all || *d <= step);
        self.pending_replay_loads = later;
        let read_ahead = self.config.replay_read_ahead;
        for (_, conn, request, load) in due {
            if !all && self.rng.chance(0.03) {
                self.trace
                    .record(format_args!("replay load failed {conn} {request}"));
                let failed = || Err(LookupFailed("the positions table is away".to_owned()));
                match load {
                    ReplayLoad::Snapshot(..) => {
                        self.answer(conn, request, |request| Input::ReplaySnapshot {
                            request,
                            rows: failed(),
                        })
                    }
                    ReplayLoad::Page(..) => {
                        self.answer(conn, request, |request| Input::ReplayPage {
                            request,
                            rows: failed(),
                        })
                    }
                }
                continue;
            }
            match load {
                ReplayLoad::Snapshot(devices, at) => {
                    let rows = self.store.replay_snapshot(&devices, at);
                    self.trace.record(format_args!(
                        "replay snapshot {conn} {request} {}",
                        rows.len()
                    ));
                    self.answer(conn, request, |request| Input::ReplaySnapshot {
                        request,
                        rows: Ok(rows.clone()),
                    });
                }
                ReplayLoad::Page(devices, after, to, limit) => {
                    let rows = self.store.replay_page(&devices, &after, to, limit);
                    self.trace
                        .record(format_args!("replay page {conn} {request} {}", rows.len()));
                    let mut over = None;
                    if let Some(replay) = self.clients.get_mut(&conn).and_then(|c| {
                        c.model
                            .replays
                            .values_mut()
                            .find(|r| r.page_load == Some(request))
                    }) {
                        let keys: Vec<(i64, String)> =
                            rows.iter().map(|r| (r.ts, r.device_id.clone())).collect();
                        over = replay.page_answered(&keys, read_ahead);
                    }
                    if let Some(over) = over {
                        self.violation(
                            LiveViolationKind::ReplayReadAhead,
                            format!("{conn}: {over}"),
                        );
                    }
                    self.answer(conn, request, |request| Input::ReplayPage {
                        request,
                        rows: Ok(rows.clone()),
                    });
                }
            }
        }
    }

    /// A frame of a replay's topic went out to `conn`: judged against the model's replay.
    fn replay_frame_sent(&mut self, conn: ConnId, message: &serde_json::Value) {
        let now = self.now;
        let Some(id) = message["topic"]
            .as_str()
            .and_then(|t| t.strip_prefix("replay:"))
        else {
            return;
        };
        let kind = message["type"].as_str().unwrap_or_default();
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if kind == "position" && client.reader == Reader::Slow {
            self.replay_positions_slow += 1;
        }
        let model = &mut client.model;
        let mut broken = Vec::new();
        match (kind, model.replays.get_mut(id)) {
            ("subscribed", _) => {}
            ("error" | "unsubscribed", _) => {
                model.replays.remove(id);
            }
            ("snapshot", Some(replay)) => {
                let mut got: Vec<(String, i64)> = message["positions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p["deviceId"].as_str()?.to_owned(), p["ts"].as_i64()?)))
                    .collect();
                got.sort();
                let at = UnixMillis(replay.start);
                let mut want: Vec<(String, i64)> = self
                    .store
                    .replay_snapshot(&replay.devices, at)
                    .into_iter()
                    .map(|r| (r.device_id, r.ts))
                    .collect();
                want.sort();
                let expected =
                    self.store
                        .keys(&replay.devices, replay.start.saturating_add(1), replay.to);
                broken = replay.snapshot_sent(now, &got, &want, expected);
            }
            ("position", Some(replay)) => {
                self.replay_positions += 1;
                let ts = message["ts"].as_i64().unwrap_or(i64::MIN);
                let device = message["deviceId"].as_str().unwrap_or_default();
                broken = replay.position_sent(now, ts, device);
            }
            ("replay_end", Some(replay)) => {
                self.replays_ended += 1;
                broken = replay.end_sent(now);
                model.replays.remove(id);
            }
            (kind, None) => broken.push((
                LiveViolationKind::ReplayMismatch,
                format!("a {kind} of replay:{id}, which the model has no replay for"),
            )),
            (kind, Some(_)) => broken.push((
                LiveViolationKind::Malformed,
                format!("a {kind} of replay:{id}"),
            )),
        }
        for (kind, detail) in broken {
            self.violation(kind, format!("{conn}: {detail}"));
        }
    }

    /// Replays of open clients that read, still running: id, paused, speed.
    fn replays_running(&self) -> Vec<(ConnId, String, bool, f64)> {
        self.clients
            .iter()
            .filter(|(_, c)| !c.closed && c.reader != Reader::Stalled)
            .flat_map(|(id, c)| {
                c.model
                    .replays
                    .values()
                    .map(move |r| (*id, r.id.clone(), r.paused, r.speed))
            })
            .collect()
    }

    /// The quiet phase's end for replays: each client plays its replays at the fastest
    /// speed (pausing no more), every load is answered at once and every reading client
    /// drained, and time passes until each replay has ended.
    fn play_out_replays(&mut self) {
        let fastest = REPLAY_SPEEDS[REPLAY_SPEEDS.len() - 1];
        let deadline = self.now + REPLAY_QUIET_MS;
        while self.now < deadline {
            let running = self.replays_running();
            if running.is_empty() {
                break;
            }
            for (conn, id, paused, speed) in running {
                let Some(id) = REPLAY_IDS.iter().copied().find(|i| *i == id) else {
                    continue;
                };
                if paused || speed < fastest {
                    let steer = Steer {
                        id,
                        speed: (speed < fastest).then_some(fastest),
                        paused: paused.then_some(false),
                        seek: None,
                    };
                    self.say(conn, Said::ReplayControl(steer));
                }
            }
            // A page answered may ask for the next one at once.
            for _ in 0..1_000 {
                if self.pending_replay_loads.is_empty() {
                    break;
                }
                self.answer_replay_loads(true);
                self.drain_readers();
            }
            let target = self.now + 100;
            self.advance_to(target);
            self.answer_pongs();
            self.answer_tokens(true);
            self.answer_authorizations(true);
            self.answer_snapshots(true);
            self.drain_readers();
        }
        for (conn, id, ..) in self.replays_running() {
            let state = self
                .clients
                .get(&conn)
                .and_then(|c| c.model.replays.get(&id))
                .map(|r| format!("{:?}, {} of {} sent", r.phase, r.next, r.expected.len()));
            self.violation(
                LiveViolationKind::ReplayUnfinished,
                format!(
                    "{conn}: replay:{id} still running at {}: {state:?}",
                    self.now
                ),
            );
        }
    }

    /// Every client that reads takes all it was sent.
    fn drain_readers(&mut self) {
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
        self.churned.insert((device.clone(), event));
        self.changed.insert((device, event), self.map_version + 1);
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
            // The live path judges the fixes of devices in some event only, each against
            // the newest it accepted of its device (what an orphan sent is not counted).
            if self.map.contains_key(&fix.device) {
                let accepted = self.accepted.entry(fix.device.clone()).or_default();
                if accepted.last().is_none_or(|last| fix.ts > *last) {
                    accepted.push(fix.ts);
                }
            }
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
                let got = client.view.last(&topic, device);
                let since = client.since.get(&topic);
                let left_out = got.is_none()
                    && since.is_some_and(|s| expected.is_some_and(|newest| newest <= *s));
                if expected != got && !left_out {
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

    /// Right after the hubs were told the time: no connection whose token's current `exp`
    /// has passed is still open (reported once per connection).
    fn check_expiries(&mut self) {
        let now = self.now;
        let missed: Vec<(ConnId, i64)> = self
            .clients
            .iter_mut()
            .filter(|(_, c)| !c.closed && !c.model.expiry_missed)
            .filter_map(|(id, c)| {
                let exp = c.model.exp.filter(|e| *e <= now)?;
                c.model.expiry_missed = true;
                Some((*id, exp))
            })
            .collect();
        for (conn, exp) in missed {
            self.violation(
                LiveViolationKind::ExpiryMissed,
                format!("{conn} still open at {now}: its token expired at {exp}"),
            );
        }
    }

    /// Right after the hubs were told the time: every held subscription was looked up
    /// again within the re-check interval (reported once per subscription).
    fn check_rechecks(&mut self) {
        let (now, every) = (self.now, self.config.visibility_recheck_ms.max(1) as i64);
        let mut missed = Vec::new();
        for (conn, client) in self.clients.iter_mut().filter(|(_, c)| !c.closed) {
            for (topic, sub) in &mut client.model.subs {
                if let ModelSub::Held {
                    checked,
                    missed: reported @ false,
                    ..
                } = sub
                {
                    if now - *checked >= every {
                        *reported = true;
                        missed.push((*conn, *topic, *checked));
                    }
                }
            }
        }
        for (conn, topic, checked) in missed {
            self.violation(
                LiveViolationKind::RecheckMissed,
                format!(
                    "{conn}: {topic} not looked up again since {checked} ({} ms; every {every} ms)",
                    now - checked
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
        self.reconnects_due(true);
        for _ in 0..20 {
            self.now += 100;
            self.answer_pongs();
            self.answer_tokens(true);
            self.answer_authorizations(true);
            self.answer_snapshots(true);
            self.answer_replay_loads(true);
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
        self.check_resumes();
        self.play_out_replays();
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
        self.check_resumes();
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
            frames: self.clients.values().map(|c| c.view.frames()).sum(),
            slow_closes: self.slow_closes,
            max_messages_per_s: self.config.max_messages_per_s,
            renewals: self.renewals,
            refusals: self.refusals,
            visibility_changes: self.visibility_changes,
            over_rate: self.over_rate,
            resumes: self.resumes,
            truncated_resumes: self.truncated_resumes,
            resumes_with_late_rows: self.resumes_with_late_rows,
            resumes_followed: self.resumes_followed,
            trails: self.trails,
            replays: self.replays,
            replays_ended: self.replays_ended,
            replay_positions: self.replay_positions,
            replay_positions_slow: self.replay_positions_slow,
            replay_steers: self.replay_steers,
            replay_seeks: self.replay_seeks,
            replays_on: self.replays_on,
            violations: self.violations,
        }
    }
}

/// The JSON of a control message (anything but a position or snapshot) whose text starts
/// with `{"type":"<kind>`, if `got` is one (the prefix spares parsing what cannot match).
fn control_message(got: &Got, kind: &str) -> Option<serde_json::Value> {
    let Got::Frame(frame) = got else {
        return None;
    };
    let payload = frame.payload();
    let prefix = format!(r#"{{"type":"{kind}"#);
    if frame.opcode() != Some(Opcode::Text)
        || !payload.starts_with(prefix.as_bytes())
        || payload.starts_with(br#"{"type":"position""#)
        || payload.starts_with(br#"{"type":"snapshot""#)
    {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// The JSON of a frame of a replay's topic (`replay:<id>`), if `frame` is one; the
/// prefixes of the live topics' positions and snapshots spare searching the most frames.
fn replay_message(frame: &Frame) -> Option<serde_json::Value> {
    let payload = frame.payload();
    if frame.opcode() != Some(Opcode::Text)
        || payload.starts_with(br#"{"type":"position","topic":"event:"#)
        || payload.starts_with(br#"{"type":"snapshot","topic":"event:"#)
    {
        return None;
    }
    let needle = br#""topic":"replay:"#;
    if !payload.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// What may follow any answer without being an effect of the message answered: a close (the
/// answer took the connection over a limit) or a position the socket's draining let out.
fn incidental(got: &Got) -> bool {
    match got {
        // A replay's clock moved on: its positions, its end, its next page.
        Got::Close(..) | Got::ReplayPage(..) => true,
        Got::Frame(frame) => {
            frame.payload().starts_with(br#"{"type":"position""#)
                || frame.payload().starts_with(br#"{"type":"replay_end""#)
        }
        _ => false,
    }
}

/// An `error` message's code, topic and message.
fn error_of(got: &Got) -> Option<(String, Option<String>, String)> {
    let m = control_message(got, "error\"")?;
    Some((
        m["code"].as_str()?.to_owned(),
        m["topic"].as_str().map(str::to_owned),
        m["message"].as_str()?.to_owned(),
    ))
}

/// Whether `got` is the answer `expect` names.
fn answers(expect: &Expect, got: &Got) -> bool {
    let is = |kind: &str, topic: &Topic| {
        control_message(got, kind)
            .is_some_and(|m| m["type"] == kind && m["topic"] == topic.to_string().as_str())
    };
    let error = || error_of(got);
    match expect {
        Expect::Nothing | Expect::RateLimited => false,
        Expect::Pong => control_message(got, "pong").is_some_and(|m| m["type"] == "pong"),
        Expect::WsPong => matches!(got, Got::Frame(f)
            if f.opcode() == Some(Opcode::Pong) && f.payload() == PING_PAYLOAD),
        Expect::Authorize(topic) => matches!(got, Got::Authorize(t) if t == topic),
        Expect::TopicLimit(topic) => error()
            .is_some_and(|(code, t, _)| code == "limit_exceeded" && t == Some(topic.to_string())),
        Expect::Unsubscribed(topic) => is("unsubscribed", topic),
        Expect::Verify(token) => matches!(got, Got::VerifyToken(t) if t == token),
        Expect::BadRequest => error().is_some_and(|(code, ..)| code == "bad_request"),
        Expect::ReplayAuthorize(topic) => matches!(got, Got::Authorize(t) if t == topic),
        Expect::ReplayLimit(topic) => error().is_some_and(|(code, t, _)| {
            code == "limit_exceeded" && t.as_deref() == Some(&format!("replay:{topic}"))
        }),
        Expect::ReplayUnsubscribed(topic) => control_message(got, "unsubscribed")
            .is_some_and(|m| m["type"] == "unsubscribed" && m["topic"] == topic.as_str()),
        Expect::Steered => true,
    }
}
