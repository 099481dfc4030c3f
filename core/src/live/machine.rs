//! [`LiveHub`]: the live fan-out decisions, fed inputs and polled for commands.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;

use super::auth::{Principal, Visibility};
use super::command::{close_code, close_reason, Command, ConnId, RequestId};
use super::config::LiveConfig;
use super::device_map::DeviceMap;
use super::held::{Held, HeldPositions};
use super::history::{self, trail_rows_per_device, HistoryQuery, Known};
use super::ingest::FanoutBatch;
use super::input::{Grant, Input, LookupFailed, TokenRefused};
use super::outbound::Offer;
use super::rate::RateBucket;
use super::recent::RecentTracks;
use super::registry::{Registry, SubState};
use super::replay::{Phase, Replay};
use super::replay_budget::ReplayBudget;
use super::stats::LiveStats;
use super::timers::Deadlines;
use crate::ttl_cache::TtlCache;
use crate::websocket::{ClientFrame, Frame, FrameError};
use crate::wire::{
    frame, parse_client_message, BadRequest, BadRequestReason, ClientMessage, ErrorCode,
    ReplayControl, ReplayRequest, ServerMessage, SubscribeOptions, Topic, WirePosition,
};
use crate::{MonoMillis, Now, UnixMillis};

/// The message of every `forbidden` error: the same whether the event is private or does
/// not exist, so that private events cannot be discovered.
pub const FORBIDDEN_MESSAGE: &str = "topic does not exist or is not allowed";

/// The code of the error sent when the shell could not look up an event's visibility or
/// load a snapshot. The contract has no code for a transient server failure; of its three,
/// `limit_exceeded` is the one that tells a client to try again later rather than that
/// its request was wrong or will never be granted.
pub const UNAVAILABLE_CODE: ErrorCode = ErrorCode::LimitExceeded;

/// Message of the error sent when an authorization lookup failed.
pub const AUTHORIZATION_FAILED_MESSAGE: &str =
    "could not check access to this topic now; subscribe again later";

/// Message of the error sent when a snapshot could not be loaded.
pub const SNAPSHOT_FAILED_MESSAGE: &str =
    "could not load the snapshot now; the subscription was dropped, subscribe again later";

/// The live fan-out state machine of one shard: the connections given to it, every
/// position of the stream (as [`FanoutBatch`]es from the [`Ingest`](super::Ingest)). After
/// every [`handle`](LiveHub::handle), drain [`poll_command`](LiveHub::poll_command) until
/// it returns `None`, then wait at most until [`poll_timeout`](LiveHub::poll_timeout)
/// before handing it [`Input::Timeout`].
#[derive(Debug)]
pub struct LiveHub {
    config: LiveConfig,
    /// Deadlines and paces run on the monotonic clock; a wall-clock step fires no ping or
    /// write timeout early or late.
    now: MonoMillis,
    /// The wall clock of the latest input: token expiries are wall-clock instants.
    wall: UnixMillis,
    out: VecDeque<Command>,
    registry: Registry,
    map: Arc<DeviceMap>,
    /// The last accepted fixes of each device the batches brought, for snapshots: a
    /// position accepted live and not yet stored must be in them.
    recent: RecentTracks,
    pings: Deadlines<ConnId>,
    /// Connections whose socket holds unwritten bytes, by when they are given up on.
    stalls: Deadlines<ConnId>,
    /// Connections by when their token expires (wall clock).
    expiries: Deadlines<ConnId, UnixMillis>,
    /// Subscriptions by when their event's visibility is looked up again.
    rechecks_due: Deadlines<(ConnId, Topic)>,
    /// Re-check look-ups in flight.
    rechecks: BTreeMap<RequestId, (ConnId, Topic)>,
    shutting_down: bool,
    stats: LiveStats,
    /// The fan-out's scratch list of subscribers, reused across positions.
    scratch: Vec<ConnId>,
    /// Paced replays, by connection and id.
    replays: BTreeMap<(ConnId, String), Replay>,
    /// The instance's replay limit, shared with the other shards, and the slots of it this
    /// hub holds: one per replay, and between inputs no more.
    replay_budget: Arc<ReplayBudget>,
    replay_slots: usize,
    /// What each replay look-up or load in flight is for.
    replay_requests: BTreeMap<RequestId, (ConnId, String)>,
    /// Event visibilities read recently.
    visibility: TtlCache<Uuid, Visibility>,
}

impl LiveHub {
    /// A hub alone under `config.replay_max_total` replays.
    pub fn new(config: LiveConfig, now: Now) -> LiveHub {
        let budget = Arc::new(ReplayBudget::new(config.replay_max_total));
        LiveHub::sharing(config, now, budget)
    }

    /// A shard of an instance whose shards share one replay limit, `replay_budget`
    /// (`config.replay_max_total` is not read).
    pub fn sharing(config: LiveConfig, now: Now, replay_budget: Arc<ReplayBudget>) -> LiveHub {
        let visibility = TtlCache::new(config.visibility_cache_ms, config.visibility_cache_entries);
        LiveHub {
            config,
            now: now.mono,
            wall: now.wall,
            out: VecDeque::new(),
            registry: Registry::default(),
            map: Arc::new(DeviceMap::default()),
            recent: RecentTracks::default(),
            pings: Deadlines::default(),
            stalls: Deadlines::default(),
            expiries: Deadlines::default(),
            rechecks_due: Deadlines::default(),
            rechecks: BTreeMap::new(),
            shutting_down: false,
            stats: LiveStats::default(),
            scratch: Vec::new(),
            replays: BTreeMap::new(),
            replay_requests: BTreeMap::new(),
            visibility,
            replay_budget,
            replay_slots: 0,
        }
    }

    /// Takes one input at time `now`.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.advance(now);
        match input {
            Input::Connected {
                conn,
                principal,
                expires_at,
            } => self.connected(conn, principal, expires_at),
            Input::Frame { conn, frame } => self.client_frame(conn, frame),
            Input::Written { conn, bytes } => self.written(conn, bytes),
            Input::Closed { conn } => {
                self.forget(conn);
            }
            Input::Visibility {
                request,
                visibility,
            } => match visibility {
                Ok(v) => {
                    if let Some(event) = self.event_asked(request) {
                        self.visibility.insert(event, v, self.now);
                    }
                    self.authorization(request, v)
                }
                Err(failed) => self.authorization_failed(request, failed),
            },
            Input::TokenVerified { conn, result } => match result {
                Ok(grant) => self.token_accepted(conn, grant),
                Err(refused) => self.token_refused(conn, refused),
            },
            Input::Snapshot { request, rows } => match rows {
                Ok(rows) => self.snapshot(request, rows),
                Err(failed) => self.snapshot_failed(request, failed),
            },
            Input::ReplaySnapshot { request, rows } => self.replay_loaded(request, rows, true),
            Input::ReplayPage { request, rows } => self.replay_loaded(request, rows, false),
            Input::Batch(batch) => self.batch(&batch),
            Input::DeviceMap(map) => self.device_map(map),
            Input::Timeout => self.timeout(),
            Input::Shutdown => self.shutdown(),
        }
        // Replays end in many ways (their end, an unsubscribe, a failed load, a close, a
        // restart under the same id): the slots of those that ended go back once here.
        // Only when one ended: the count is shared by every shard, and writing it on every
        // input would bounce its cache line between the cores.
        if self.replay_slots > self.replays.len() {
            let ended = self.replay_slots - self.replays.len();
            self.replay_budget.give_back(ended);
            self.replay_slots -= ended;
        }
    }

    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// The next command, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] is due next: the first ping, write, token-expiry or re-check
    /// deadline. `None` with no connections.
    pub fn poll_timeout(&self) -> Option<MonoMillis> {
        let replays = self
            .replays
            .iter()
            .filter_map(|((conn, _), r)| r.deadline(self.blocked(*conn)));
        [
            self.pings.first(),
            self.stalls.first(),
            // The monotonic instant the wall clock should reach it, as things stand; a
            // wall-clock step is caught up with at the next input.
            self.expiries.first().map(|exp| {
                self.now
                    .plus(u64::try_from(exp.since(self.wall)).unwrap_or(0))
            }),
            self.rechecks_due.first(),
        ]
        .into_iter()
        .flatten()
        .chain(replays)
        .min()
    }

    /// The cumulative counters, with the gauges (`connections`, `subscriptions`) at zero,
    /// so that counters of several shards add up: the hub's own record never holds the
    /// gauges ([`LiveHub::stats`] reads them from the registry).
    pub fn counters(&self) -> LiveStats {
        self.stats
    }

    /// The counters and the gauges; no walk over the connections.
    pub fn stats(&self) -> LiveStats {
        LiveStats {
            connections: self.registry.len() as u64,
            subscriptions: self.registry.subscriptions(),
            ..self.stats
        }
    }

    /// Position messages held while a snapshot loads or parked while a client catches up,
    /// over every connection (a walk of them all: for checks, not for every metrics pass).
    pub fn waiting(&self) -> u64 {
        self.registry.conns().map(|c| c.waiting()).sum()
    }

    /// True while the hub knows `conn` (connected and not closed).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.registry.get(conn).is_some()
    }

    /// Bytes sent to `conn` and not yet reported drained.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<u64> {
        self.registry.get(conn).map(|c| c.out.queued())
    }

    /// Queued plus parked (conflated, waiting) bytes of `conn`: what the back-pressure
    /// threshold applies to.
    pub fn buffered_bytes(&self, conn: ConnId) -> Option<u64> {
        self.registry.get(conn).map(|c| c.out.buffered())
    }

    /// The version of the device map in use; `None` before the first one.
    pub fn device_map_version(&self) -> Option<u64> {
        self.map.version()
    }

    // -----------------------------------------------------------------------------------
    // Connections and client messages

    /// During shutdown a new connection is closed at once with 1001. A second `Connected`
    /// for an id the hub knows is ignored.
    fn connected(&mut self, conn: ConnId, principal: Principal, expires_at: Option<UnixMillis>) {
        if self.shutting_down {
            self.out.push_back(Command::Close {
                conn,
                code: close_code::GOING_AWAY,
                reason: close_reason::SHUTDOWN,
            });
            return;
        }
        let rate = RateBucket::full(self.config.max_messages_per_s, self.now);
        if self.registry.insert(conn, principal, rate) {
            self.pings
                .schedule(conn, self.now.plus(self.ping_interval()));
            if let Some(t) = expires_at {
                self.expiries.schedule(conn, t);
            }
        }
    }

    fn client_frame(&mut self, conn: ConnId, frame: Result<ClientFrame, FrameError>) {
        if !self.is_open(conn) {
            return;
        }
        let counted = matches!(
            frame,
            Ok(ClientFrame::Text(_) | ClientFrame::Binary | ClientFrame::Ping(_))
        );
        if counted && !self.within_rate(conn) {
            self.stats.rate_limited += 1;
            // A ping over the rate is not answered; a message gets `limit_exceeded` and
            // counts as a bad one.
            if !matches!(frame, Ok(ClientFrame::Ping(_))) {
                let message = format!(
                    "at most {} messages per second",
                    self.config.max_messages_per_s
                );
                if self.send_error(conn, ErrorCode::LimitExceeded, None, message) {
                    self.count_bad(conn);
                }
            }
            return;
        }
        match frame {
            Ok(ClientFrame::Text(text)) => self.client_text(conn, &text),
            // Binary is a message the protocol does not have.
            Ok(ClientFrame::Binary) => {
                self.bad_request(conn, BadRequest::new(BadRequestReason::Binary))
            }
            Ok(ClientFrame::Ping(payload)) => {
                self.send_control(conn, Frame::pong(&payload));
            }
            Ok(ClientFrame::Pong) => {
                if let Some(c) = self.registry.get_mut(conn) {
                    c.unanswered_ping = None;
                }
            }
            Ok(ClientFrame::Close(_)) => {
                self.close(conn, close_code::NORMAL, close_reason::NORMAL);
            }
            // A message over the hard limit (64 KiB, all its frames together) is not read
            // further, and the connection is closed with 1009; other violations with the
            // code RFC 6455 gives them.
            Err(error) => {
                if !matches!(error, FrameError::TooLarge) {
                    self.stats.protocol_errors += 1;
                }
                self.close(conn, error.close_code(), error.close_reason());
            }
        }
    }

    /// One complete text message from the client.
    fn client_text(&mut self, conn: ConnId, text: &[u8]) {
        if text.len() > self.config.max_message_bytes {
            self.bad_request(conn, BadRequest::new(BadRequestReason::TooLarge));
            return;
        }
        match parse_client_message(text) {
            Err(bad) => self.bad_request(conn, bad),
            Ok(ClientMessage::Ping) => {
                self.send_control(conn, frame(&ServerMessage::Pong));
            }
            Ok(ClientMessage::Subscribe(topic, options)) => self.subscribe(conn, topic, options),
            Ok(ClientMessage::Unsubscribe(topic)) => self.unsubscribe(conn, topic),
            Ok(ClientMessage::Auth(token)) => {
                self.out.push_back(Command::VerifyToken { conn, token });
            }
            Ok(ClientMessage::Replay(request)) => self.replay(conn, request),
            Ok(ClientMessage::ReplayControl(control)) => self.replay_control(conn, control),
            Ok(ClientMessage::UnsubscribeReplay(id)) => {
                self.replays.remove(&(conn, id.clone()));
                let unsubscribed = frame(&ServerMessage::Unsubscribed {
                    topic: crate::wire::replay_topic(&id),
                });
                self.send_control(conn, unsubscribed);
            }
        }
    }

    fn within_rate(&mut self, conn: ConnId) -> bool {
        let (per_s, now) = (self.config.max_messages_per_s.max(1), self.now);
        self.registry
            .get_mut(conn)
            .is_some_and(|c| c.rate.take(per_s, now))
    }

    /// A fresh token: new claims and deadline, answered with its `exp`, and every
    /// subscription checked against the new claims.
    fn token_accepted(&mut self, conn: ConnId, grant: Grant) {
        let Some(c) = self.registry.get_mut(conn) else {
            return;
        };
        c.principal = grant.principal;
        self.expiries.schedule(conn, grant.expires_at);
        let exp = u64::try_from(grant.expires_at.as_i64() / 1_000).unwrap_or(0);
        if !self.send_control(conn, frame(&ServerMessage::Auth { exp })) {
            return;
        }
        for topic in self.registry.topics_of(conn) {
            self.recheck(conn, topic);
        }
    }

    /// An invalid or expired token in `auth` changes nothing.
    fn token_refused(&mut self, conn: ConnId, refused: TokenRefused) {
        self.send_error(conn, ErrorCode::Unauthorized, None, refused.0);
    }

    /// Looks the visibility of `topic`'s event up again for `conn`'s subscription.
    fn recheck(&mut self, conn: ConnId, topic: Topic) {
        let request = self.registry.new_request();
        self.rechecks.insert(request, (conn, topic));
        self.authorize(request, conn, topic);
    }

    /// Has `request` (registered by the caller) answered from the visibilities read
    /// recently, or asks the store.
    fn authorize(&mut self, request: RequestId, conn: ConnId, topic: Topic) {
        let event = topic.event_id();
        match self.visibility.get(event, self.now) {
            Some(visibility) => self.authorization(request, visibility),
            None => self.out.push_back(Command::Authorize {
                request,
                conn,
                topic,
            }),
        }
    }

    /// The event a visibility look-up still awaited asks about, from what waits for it (a
    /// replay, a re-check or a subscription).
    fn event_asked(&self, request: RequestId) -> Option<Uuid> {
        if let Some(key) = self.replay_requests.get(&request) {
            return self.replays.get(key).map(|r| r.event);
        }
        self.rechecks
            .get(&request)
            .copied()
            .or_else(|| self.registry.request(request))
            .map(|(_, topic)| topic.event_id())
    }

    /// The answer to a re-check: a subscription its connection may no longer hold ends with
    /// `forbidden`, and nothing more of its topic is sent.
    fn rechecked(&mut self, conn: ConnId, topic: Topic, visibility: Visibility) {
        let Some(c) = self.registry.get(conn) else {
            return;
        };
        // A topic being subscribed again is judged by its own look-up; once that one is
        // held, a re-check still in flight applies to it too (its answer is as fresh).
        let held = c.subs.get(&topic).is_some_and(SubState::is_subscribed);
        if !held || c.principal.may_subscribe(topic.event_id(), visibility) {
            return;
        }
        self.stats.revoked_subscriptions += 1;
        self.drop_sub(conn, topic);
        self.send_error(
            conn,
            ErrorCode::Forbidden,
            Some(topic.to_string()),
            FORBIDDEN_MESSAGE.to_owned(),
        );
    }

    /// The socket took `bytes` more of what was sent to `conn`. Parked positions go out
    /// while the queue stays at or under the conflate threshold. A socket left holding
    /// bytes must take some within the write timeout, or the connection is closed.
    fn written(&mut self, conn: ConnId, bytes: u64) {
        let timeout = self.config.write_timeout_ms.max(1);
        let Some(c) = self.registry.get_mut(conn) else {
            return;
        };
        c.out.record_drained(bytes);
        if c.out.queued() == 0 {
            self.stalls.cancel(conn);
        } else if bytes > 0 || !self.stalls.contains(conn) {
            self.stalls.schedule(conn, self.now.plus(timeout));
        }
        if self.flush(conn) {
            self.pump_replays_of(conn);
        }
    }

    // -----------------------------------------------------------------------------------
    // Answers to Authorize and LoadSnapshot

    /// Allowed: `subscribed` and a [`Command::LoadSnapshot`]; not allowed or unknown:
    /// `forbidden`, with the same message either way.
    fn authorization(&mut self, request: RequestId, visibility: Visibility) {
        if let Some((conn, id)) = self.replay_requests.remove(&request) {
            self.replay_authorized(conn, id, request, Some(visibility));
            return;
        }
        if let Some((conn, topic)) = self.rechecks.remove(&request) {
            self.rechecked(conn, topic, visibility);
            return;
        }
        let Some((conn, topic)) = self.registry.request(request) else {
            return;
        };
        let options = match self.registry.get(conn).and_then(|c| c.subs.get(&topic)) {
            Some(SubState::Authorizing { options, .. }) => *options,
            _ => SubscribeOptions::default(),
        };
        let allowed = self
            .registry
            .get(conn)
            .is_some_and(|c| c.principal.may_subscribe(topic.event_id(), visibility));
        if !allowed {
            self.registry.remove_sub(conn, topic);
            self.send_error(
                conn,
                ErrorCode::Forbidden,
                Some(topic.to_string()),
                FORBIDDEN_MESSAGE.to_owned(),
            );
            return;
        }
        self.rechecks_due.schedule(
            (conn, topic),
            self.now.plus(self.config.visibility_recheck_ms.max(1)),
        );
        let load = self.registry.new_request();
        let (query, held) = self.history_of(options);
        self.registry.set_sub(
            conn,
            topic,
            SubState::Loading {
                request: load,
                query,
                held,
            },
        );
        let subscribed = frame(&ServerMessage::Subscribed {
            topic: topic.to_string(),
        });
        if self.send_control(conn, subscribed) {
            let devices = self
                .map
                .devices_of(topic.event_id())
                .map(str::to_owned)
                .collect();
            self.out.push_back(Command::LoadSnapshot {
                request: load,
                conn,
                topic,
                devices,
                history: query,
            });
        }
    }

    /// The visibility lookup failed (Postgres away): the client gets an error with
    /// [`UNAVAILABLE_CODE`] and is not subscribed.
    fn authorization_failed(&mut self, request: RequestId, _failed: LookupFailed) {
        if let Some((conn, id)) = self.replay_requests.remove(&request) {
            self.replay_authorized(conn, id, request, None);
            return;
        }
        // A re-check that could not look the event up keeps the subscription: the next one
        // will tell.
        if self.rechecks.remove(&request).is_some() {
            self.stats.lookup_failures += 1;
            return;
        }
        let Some((conn, topic)) = self.registry.request(request) else {
            return;
        };
        self.stats.lookup_failures += 1;
        self.registry.remove_sub(conn, topic);
        self.send_error(
            conn,
            UNAVAILABLE_CODE,
            Some(topic.to_string()),
            AUTHORIZATION_FAILED_MESSAGE.to_owned(),
        );
    }

    /// The snapshot is built from the stored rows and the live path's recent fixes (see
    /// `history.rs`); it is sent, then the positions held while it loaded that are newer
    /// than it, then live positions.
    fn snapshot(&mut self, request: RequestId, rows: Vec<WirePosition>) {
        let Some((conn, topic)) = self.registry.request(request) else {
            return;
        };
        let (query, overflowed) = match self.registry.get(conn).and_then(|c| c.subs.get(&topic)) {
            Some(SubState::Loading { query, held, .. }) => (*query, held.overflowed()),
            _ => (HistoryQuery::Latest, false),
        };
        let known = Known {
            devices: self.map.devices_of(topic.event_id()).collect(),
            recent: &self.recent,
            rule: self.config.jump_rule(),
            trail_max_points: self.config.trail_max_points,
            resume_max_positions: self.config.resume_max_positions,
            overflowed,
        };
        let built = history::build(&known, query, rows);
        let held = match self.registry.set_sub(
            conn,
            topic,
            SubState::Live {
                floors: built.floors,
            },
        ) {
            Some(SubState::Loading { held, .. }) => held,
            _ => HeldPositions::newest_only(),
        };
        self.stats.snapshots += 1;
        let snapshot = frame(&ServerMessage::Snapshot {
            topic: topic.to_string(),
            positions: built.positions,
            truncated: built.truncated,
        });
        let mut open = self.send_snapshot(conn, snapshot);
        for (device, Held { ts, frame }) in held.into_iter() {
            if open {
                open = self.offer_live(conn, topic, &device, ts, &frame);
            } else {
                self.stats.dropped_messages += 1;
            }
        }
    }

    /// What a subscription's snapshot reads, and how positions are held while it loads.
    fn history_of(&self, options: SubscribeOptions) -> (HistoryQuery, HeldPositions) {
        let cap = self.config.resume_max_positions;
        if let Some(since) = options.since {
            let query = HistoryQuery::Since {
                since: UnixMillis(since),
                max_rows: cap,
            };
            (query, HeldPositions::every(cap, true))
        } else if options.trail_s > 0 {
            (
                Self::trail_query(&self.config, options.trail_s),
                HeldPositions::every(cap, true),
            )
        } else {
            (HistoryQuery::Latest, HeldPositions::newest_only())
        }
    }

    /// A snapshot with `trail_s` seconds of trail (0: none).
    fn trail_query(config: &LiveConfig, trail_s: u64) -> HistoryQuery {
        if trail_s == 0 {
            return HistoryQuery::Latest;
        }
        HistoryQuery::Trail {
            window_ms: trail_s.saturating_mul(1_000),
            max_rows_per_device: trail_rows_per_device(config.trail_max_points),
        }
    }

    /// The client was already told `subscribed`, and may not get positions without a
    /// snapshot first: it gets an error with [`UNAVAILABLE_CODE`] and then `unsubscribed`,
    /// so that its view of its subscriptions stays right, and may subscribe again.
    fn snapshot_failed(&mut self, request: RequestId, _failed: LookupFailed) {
        let Some((conn, topic)) = self.registry.request(request) else {
            return;
        };
        self.stats.lookup_failures += 1;
        self.drop_sub(conn, topic);
        let open = self.send_error(
            conn,
            UNAVAILABLE_CODE,
            Some(topic.to_string()),
            SNAPSHOT_FAILED_MESSAGE.to_owned(),
        );
        if open {
            let unsubscribed = frame(&ServerMessage::Unsubscribed {
                topic: topic.to_string(),
            });
            self.send_control(conn, unsubscribed);
        }
    }

    // -----------------------------------------------------------------------------------
    // Stream input and the device map

    /// Every position of the batch goes to the subscribers of each of its topics, as the
    /// frame the ingest built once.
    fn batch(&mut self, batch: &FanoutBatch) {
        let mut subscribers = std::mem::take(&mut self.scratch);
        for accepted in &batch.positions {
            self.recent.push(&accepted.device, accepted.fix);
            for (topic, frame) in &accepted.frames {
                self.registry.subscribers_into(*topic, &mut subscribers);
                for &conn in &subscribers {
                    self.deliver(conn, *topic, &accepted.device, accepted.fix.ts, frame);
                }
            }
        }
        self.scratch = subscribers;
    }

    /// A new device-to-event map replaces the old one whole; an older version is ignored
    /// (a refresh that finished late). Subscriptions stay; the next position of a device
    /// goes to the events it belongs to now.
    fn device_map(&mut self, map: Arc<DeviceMap>) {
        if map.supersedes(&self.map) {
            self.map = map;
        }
    }

    // -----------------------------------------------------------------------------------
    // Time and shutdown

    /// Expired tokens close their connection with 4001; subscriptions due are looked up
    /// again; connections due are pinged, or closed with 1008 when a ping has been waiting
    /// for its pong for two intervals; a socket that took nothing within the write timeout
    /// is closed with 1013.
    fn timeout(&mut self) {
        let now = self.now;
        let keys: Vec<(ConnId, String)> = self.replays.keys().cloned().collect();
        for (conn, id) in keys {
            self.pump_replay(conn, &id);
        }
        for conn in self.expiries.take_due(self.wall) {
            self.stats.token_expiries += 1;
            self.close(conn, close_code::TOKEN_EXPIRED, close_reason::TOKEN_EXPIRED);
        }
        let every = self.config.visibility_recheck_ms.max(1);
        for (conn, topic) in self.rechecks_due.take_due(now) {
            let held = self
                .registry
                .get(conn)
                .and_then(|c| c.subs.get(&topic))
                .is_some_and(SubState::is_subscribed);
            if held {
                self.rechecks_due.schedule((conn, topic), now.plus(every));
                self.recheck(conn, topic);
            }
        }
        for conn in self.stalls.take_due(now) {
            self.stats.write_timeouts += 1;
            self.close(
                conn,
                close_code::TRY_AGAIN_LATER,
                close_reason::WRITE_TIMEOUT,
            );
        }
        let interval = self.ping_interval();
        for conn in self.pings.take_due(now) {
            let Some(c) = self.registry.get_mut(conn) else {
                continue;
            };
            if c.unanswered_ping
                .is_some_and(|since| now >= since.plus(interval.saturating_mul(2)))
            {
                self.stats.ping_timeouts += 1;
                self.close(
                    conn,
                    close_code::POLICY_VIOLATION,
                    close_reason::PING_TIMEOUT,
                );
                continue;
            }
            c.unanswered_ping.get_or_insert(now);
            self.pings.schedule(conn, now.plus(interval));
            self.send_control(conn, Frame::ping());
        }
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        for conn in self.registry.ids() {
            self.close(conn, close_code::GOING_AWAY, close_reason::SHUTDOWN);
        }
        self.pings.clear();
        self.stalls.clear();
        self.expiries.clear();
        self.rechecks_due.clear();
        self.rechecks.clear();
        self.replays.clear();
        self.replay_requests.clear();
    }

    // -----------------------------------------------------------------------------------
    // Internals

    fn advance(&mut self, now: Now) {
        // Monotonic by contract; kept so all the same if a caller's clock is not.
        self.now = self.now.max(now.mono);
        self.wall = now.wall;
        // Every replay's clock catches up under the state it ran in since it was last
        // brought up, before this input changes anything (a page, a drained or filled
        // queue, a pause): what a replay plays never depends on how often the hub is told
        // the time, and time it waited is never played.
        let threshold = self.config.conflate_threshold_bytes;
        for ((conn, _), replay) in self.replays.iter_mut() {
            replay.tick(self.now, is_blocked(&self.registry, threshold, *conn));
        }
    }

    fn ping_interval(&self) -> u64 {
        self.config.ping_interval_ms.max(1)
    }

    /// A `trail_s` over `LIVE_TRAIL_MAX_S` is a `bad_request` naming `topic`; true when it
    /// was.
    fn refuse_long_trail(&mut self, conn: ConnId, trail_s: u64, topic: String) -> bool {
        if trail_s <= self.config.trail_max_s {
            return false;
        }
        let reason = BadRequestReason::TrailTooLong {
            max: self.config.trail_max_s,
        };
        let topic = Some(topic);
        self.bad_request(conn, BadRequest { reason, topic });
        true
    }

    fn subscribe(&mut self, conn: ConnId, topic: Topic, options: SubscribeOptions) {
        if self.refuse_long_trail(conn, options.trail_s, topic.to_string()) {
            return;
        }
        let Some(c) = self.registry.get(conn) else {
            return;
        };
        if !c.subs.contains_key(&topic) && c.subs.len() >= self.config.max_subscriptions {
            let message = format!(
                "at most {} topics per connection",
                self.config.max_subscriptions
            );
            self.send_error(
                conn,
                ErrorCode::LimitExceeded,
                Some(topic.to_string()),
                message,
            );
            return;
        }
        // Subscribing again to a topic starts over: authorization (visibility may have
        // changed), `subscribed`, a fresh snapshot. Each `subscribed` is followed by one
        // snapshot, and the fresh one is at least as new as anything already sent.
        self.drop_sub(conn, topic);
        let request = self.registry.new_request();
        self.registry
            .set_sub(conn, topic, SubState::Authorizing { request, options });
        self.authorize(request, conn, topic);
    }

    fn unsubscribe(&mut self, conn: ConnId, topic: Topic) {
        self.drop_sub(conn, topic);
        let unsubscribed = frame(&ServerMessage::Unsubscribed {
            topic: topic.to_string(),
        });
        self.send_control(conn, unsubscribed);
    }

    /// Ends `conn`'s subscription to `topic`, in whatever state, counting what was waiting.
    fn drop_sub(&mut self, conn: ConnId, topic: Topic) {
        self.rechecks_due.cancel((conn, topic));
        if let Some(SubState::Loading { held, .. }) = self.registry.remove_sub(conn, topic) {
            self.stats.dropped_messages += held.len() as u64;
        }
        if let Some(c) = self.registry.get_mut(conn) {
            self.stats.dropped_messages += c.out.discard_topic(topic);
        }
    }

    /// One position message for one subscriber of its topic.
    fn deliver(
        &mut self,
        conn: ConnId,
        topic: Topic,
        device: &Arc<str>,
        ts: UnixMillis,
        frame: &Frame,
    ) {
        let Some(state) = self
            .registry
            .get_mut(conn)
            .and_then(|c| c.subs.get_mut(&topic))
        else {
            return;
        };
        match state {
            SubState::Authorizing { .. } => {}
            SubState::Loading { held, .. } => {
                self.stats.position_deliveries += 1;
                let replaced = held.hold(
                    device,
                    Held {
                        ts,
                        frame: frame.clone(),
                    },
                );
                if replaced {
                    self.stats.conflated_messages += 1;
                }
            }
            SubState::Live { .. } => {
                self.stats.position_deliveries += 1;
                self.offer_live(conn, topic, device, ts, frame);
            }
        }
    }

    /// A position message for a live subscription: dropped when the snapshot already had
    /// the device at this fix time or later, else sent or parked. False once `conn` is
    /// closed.
    fn offer_live(
        &mut self,
        conn: ConnId,
        topic: Topic,
        device: &Arc<str>,
        ts: UnixMillis,
        frame: &Frame,
    ) -> bool {
        let threshold = self.config.conflate_threshold_bytes;
        let Some(c) = self.registry.get_mut(conn) else {
            self.stats.dropped_messages += 1;
            return false;
        };
        let Some(SubState::Live { floors }) = c.subs.get_mut(&topic) else {
            self.stats.dropped_messages += 1;
            return true;
        };
        if let Some(&floor) = floors.get(device) {
            if ts <= floor {
                self.stats.dropped_messages += 1;
                return true;
            }
            floors.remove(device);
        }
        match c.out.offer(topic, device, frame, threshold) {
            Offer::Send => {
                c.out.record_sent(frame.len());
                self.stats.fanout_messages += 1;
                self.out.push_back(Command::Send {
                    conn,
                    frame: frame.clone(),
                });
                self.check_backpressure(conn)
            }
            Offer::Parked { replaced } => {
                if replaced {
                    self.stats.conflated_messages += 1;
                }
                self.flush(conn)
            }
        }
    }

    /// Sends parked positions while the queue allows; false once `conn` is closed.
    fn flush(&mut self, conn: ConnId) -> bool {
        let threshold = self.config.conflate_threshold_bytes;
        let Some(c) = self.registry.get_mut(conn) else {
            return false;
        };
        while let Some(frame) = c.out.pop_ready(threshold) {
            c.out.record_sent(frame.len());
            self.stats.fanout_messages += 1;
            self.out.push_back(Command::Send { conn, frame });
        }
        self.check_backpressure(conn)
    }

    /// Closes `conn` with 1013 when its buffer passed the back-pressure threshold; false
    /// once `conn` is closed.
    fn check_backpressure(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.registry.get(conn) else {
            return false;
        };
        if c.out.pressing() > self.config.backpressure_threshold_bytes {
            self.stats.slow_consumer_closes += 1;
            self.close(
                conn,
                close_code::TRY_AGAIN_LATER,
                close_reason::SLOW_CONSUMER,
            );
            return false;
        }
        true
    }

    /// Sends a snapshot (see `outbound.rs` on its exemption from back-pressure); false once
    /// `conn` is closed.
    fn send_snapshot(&mut self, conn: ConnId, frame: Frame) -> bool {
        let Some(c) = self.registry.get_mut(conn) else {
            return false;
        };
        c.out.record_snapshot_sent(frame.len());
        self.out.push_back(Command::Send { conn, frame });
        self.check_backpressure(conn)
    }

    /// Sends a message that is never conflated; false once `conn` is closed.
    fn send_control(&mut self, conn: ConnId, frame: Frame) -> bool {
        let Some(c) = self.registry.get_mut(conn) else {
            return false;
        };
        c.out.record_sent(frame.len());
        self.out.push_back(Command::Send { conn, frame });
        self.check_backpressure(conn)
    }

    fn send_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        topic: Option<String>,
        message: String,
    ) -> bool {
        let error = frame(&ServerMessage::Error {
            code,
            topic,
            message,
        });
        self.send_control(conn, error)
    }

    /// Answers `bad_request`; the connection stays usable until its
    /// `max_bad_messages`-th, which is answered and then closed with 1008.
    fn bad_request(&mut self, conn: ConnId, bad: BadRequest) {
        let message = bad.reason.to_string();
        if self.send_error(conn, ErrorCode::BadRequest, bad.topic, message) {
            self.count_bad(conn);
        }
    }

    /// Counts a bad message; the `max_bad_messages`-th closes the connection with 1008.
    fn count_bad(&mut self, conn: ConnId) {
        let limit = self.config.max_bad_messages.max(1);
        let Some(c) = self.registry.get_mut(conn) else {
            return;
        };
        c.bad_requests = c.bad_requests.saturating_add(1);
        if c.bad_requests >= limit {
            self.close(
                conn,
                close_code::POLICY_VIOLATION,
                close_reason::TOO_MANY_BAD_REQUESTS,
            );
        }
    }

    /// Emits `Close` and forgets `conn`.
    fn close(&mut self, conn: ConnId, code: u16, reason: &'static str) {
        if self.forget(conn) {
            self.out.push_back(Command::Close { conn, code, reason });
        }
    }

    /// Forgets `conn`, counting what was waiting for it; false when it was unknown.
    fn forget(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.registry.remove(conn) else {
            return false;
        };
        self.stats.dropped_messages += c.waiting();
        self.pings.cancel(conn);
        self.stalls.cancel(conn);
        self.expiries.cancel(conn);
        self.rechecks_due.cancel_where(|(c, _)| *c == conn);
        self.rechecks.retain(|_, (c, _)| *c != conn);
        self.replays.retain(|(c, _), _| *c != conn);
        self.replay_requests.retain(|_, (c, _)| *c != conn);
        true
    }

    // -----------------------------------------------------------------------------------
    // Replays (contract section 5.1; the clock and read-ahead are `replay.rs`)

    /// A replay: within the limits, its event's visibility is looked up; the same id
    /// again starts it over.
    fn replay(&mut self, conn: ConnId, request: ReplayRequest) {
        let key = (conn, request.id.clone());
        self.replays.remove(&key);
        let topic = crate::wire::replay_topic(&request.id);
        if self.refuse_long_trail(conn, request.trail_s, topic.clone()) {
            return;
        }
        let mine = self.replays.keys().filter(|(c, _)| *c == conn).count();
        let limit = if mine >= self.config.replay_max_per_connection {
            Some(format!(
                "at most {} replays per connection",
                self.config.replay_max_per_connection
            ))
        } else if !self.take_replay_slot() {
            Some("too many replays are running; try again later".to_owned())
        } else {
            None
        };
        if let Some(message) = limit {
            self.send_error(conn, ErrorCode::LimitExceeded, Some(topic), message);
            return;
        }
        let mut replay = Replay::new(&request, self.now);
        let id = self.registry.new_request();
        replay.request = Some((id, 0));
        self.replays.insert(key.clone(), replay);
        self.replay_requests.insert(id, key);
        self.authorize(id, conn, Topic(request.event));
    }

    /// The answer to a replay's visibility look-up (`None`: it failed): `subscribed` and the
    /// snapshot at `from` when allowed, else `forbidden` (the subscription's answer).
    fn replay_authorized(
        &mut self,
        conn: ConnId,
        id: String,
        request: RequestId,
        visibility: Option<Visibility>,
    ) {
        let key = (conn, id);
        let Some(replay) = self.replays.get(&key) else {
            return;
        };
        if replay.request.map(|(r, _)| r) != Some(request) {
            return;
        }
        let (event, topic) = (replay.event, replay.topic.clone());
        let allowed = match visibility {
            None => {
                self.replays.remove(&key);
                self.stats.lookup_failures += 1;
                let message = AUTHORIZATION_FAILED_MESSAGE.to_owned();
                self.send_error(conn, UNAVAILABLE_CODE, Some(topic), message);
                return;
            }
            Some(v) => self
                .registry
                .get(conn)
                .is_some_and(|c| c.principal.may_subscribe(event, v)),
        };
        if !allowed {
            self.replays.remove(&key);
            let message = FORBIDDEN_MESSAGE.to_owned();
            self.send_error(conn, ErrorCode::Forbidden, Some(topic), message);
            return;
        }
        let devices: Vec<String> = self.map.devices_of(event).map(str::to_owned).collect();
        let now = self.now;
        if let Some(replay) = self.replays.get_mut(&key) {
            replay.devices = devices;
            let at = replay.cursor.ts;
            replay.seek(at, now);
        }
        if self.send_control(conn, frame(&ServerMessage::Subscribed { topic })) {
            self.load_replay_snapshot(&key);
        }
    }

    fn load_replay_snapshot(&mut self, key: &(ConnId, String)) {
        let request = self.registry.new_request();
        let Some(trail_s) = self.replays.get(key).map(|r| r.trail_s) else {
            return;
        };
        let history = Self::trail_query(&self.config, trail_s);
        let Some(replay) = self.replays.get_mut(key) else {
            return;
        };
        replay.request = Some((request, 0));
        replay.snapshot_at = Some(replay.cursor.ts);
        self.replay_requests.insert(request, key.clone());
        self.out.push_back(Command::LoadReplaySnapshot {
            request,
            conn: key.0,
            devices: replay.devices.clone(),
            at: replay.cursor.ts,
            history,
        });
    }

    /// A replay's snapshot or page arrived. A failed load ends the replay with an error
    /// ([`UNAVAILABLE_CODE`]) and `unsubscribed`, as a failed snapshot ends a subscription.
    fn replay_loaded(
        &mut self,
        request: RequestId,
        rows: Result<Vec<WirePosition>, LookupFailed>,
        snapshot: bool,
    ) {
        let Some(key) = self.replay_requests.remove(&request) else {
            return;
        };
        let conn = key.0;
        let Some(replay) = self.replays.get_mut(&key) else {
            return;
        };
        let Some((expected, limit)) = replay.request else {
            return;
        };
        if expected != request {
            return;
        }
        replay.request = None;
        if snapshot && replay.snapshot_at != Some(replay.cursor.ts) {
            // Sought elsewhere while it loaded, whatever its answer: now the time sought last.
            self.load_replay_snapshot(&key);
            return;
        }
        let rows = match rows {
            Ok(rows) => rows,
            Err(_) => {
                let topic = replay.topic.clone();
                self.replays.remove(&key);
                self.stats.lookup_failures += 1;
                let message = SNAPSHOT_FAILED_MESSAGE.to_owned();
                if self.send_error(conn, UNAVAILABLE_CODE, Some(topic.clone()), message) {
                    self.send_control(conn, frame(&ServerMessage::Unsubscribed { topic }));
                }
                return;
            }
        };
        if snapshot {
            if replay.phase != Phase::Snapshot {
                return;
            }
            // The newest row per device of the replay's devices at or before the time, with
            // its trail: what a subscription's snapshot would have been then, without the
            // live path's recent fixes (they are of now, not of then).
            let at = replay.cursor.ts.as_i64();
            let rows: Vec<WirePosition> = rows.into_iter().filter(|r| r.ts <= at).collect();
            let no_recent = RecentTracks::default();
            let known = Known {
                devices: replay.devices.iter().map(String::as_str).collect(),
                recent: &no_recent,
                rule: self.config.jump_rule(),
                trail_max_points: self.config.trail_max_points,
                resume_max_positions: self.config.resume_max_positions,
                overflowed: false,
            };
            let query = Self::trail_query(&self.config, replay.trail_s);
            let positions = history::build(&known, query, rows).positions;
            replay.phase = Phase::Playing;
            replay.tick(self.now, true);
            let message = ServerMessage::Snapshot {
                topic: replay.topic.clone(),
                positions,
                truncated: false,
            };
            self.stats.snapshots += 1;
            if !self.send_snapshot(conn, frame(&message)) {
                return;
            }
        } else {
            replay.page(rows, limit);
        }
        self.pump_replay(conn, &key.1);
    }

    fn replay_control(&mut self, conn: ConnId, control: ReplayControl) {
        let key = (conn, control.id.clone());
        let (now, blocked) = (self.now, self.blocked(conn));
        let Some(replay) = self.replays.get_mut(&key) else {
            let bad = BadRequest {
                reason: BadRequestReason::UnknownReplay,
                topic: Some(crate::wire::replay_topic(&control.id)),
            };
            self.bad_request(conn, bad);
            return;
        };
        replay.tick(now, blocked);
        if let Some(speed) = control.speed {
            replay.set_speed(speed);
        }
        if let Some(paused) = control.paused {
            replay.set_paused(paused);
        }
        if let Some(at) = control.seek {
            if replay.phase == Phase::Authorizing {
                // The snapshot follows the grant, at the new time.
                let authorizing = replay.request;
                replay.seek(UnixMillis(at), now);
                replay.phase = Phase::Authorizing;
                replay.request = authorizing;
                return;
            }
            if replay.phase == Phase::Snapshot && replay.request.is_some() {
                // One snapshot load at a time, whatever the rate of seeks (a trail snapshot
                // of a large event reads Postgres for a second): the one in flight is
                // answered for its old time, dropped, and the time sought last loaded then.
                let (in_flight, loading_at) = (replay.request, replay.snapshot_at);
                replay.seek(UnixMillis(at), now);
                replay.request = in_flight;
                replay.snapshot_at = loading_at;
                return;
            }
            // What was read or loading for the old time is dropped: its answer is ignored.
            if let Some((old, _)) = replay.request.take() {
                self.replay_requests.remove(&old);
            }
            replay.seek(UnixMillis(at), now);
            self.load_replay_snapshot(&key);
            return;
        }
        self.pump_replay(conn, &key.1);
    }

    /// A slot for one more replay: one this hub holds for a replay that ended during this
    /// input (a restart under the same id), else one from the shared budget.
    fn take_replay_slot(&mut self) -> bool {
        if self.replay_slots > self.replays.len() {
            return true;
        }
        let taken = self.replay_budget.try_take();
        self.replay_slots += usize::from(taken);
        taken
    }

    fn blocked(&self, conn: ConnId) -> bool {
        is_blocked(&self.registry, self.config.conflate_threshold_bytes, conn)
    }

    fn pump_replays_of(&mut self, conn: ConnId) {
        let ids: Vec<String> = self
            .replays
            .range((conn, String::new())..)
            .take_while(|((c, _), _)| *c == conn)
            .map(|((_, id), _)| id.clone())
            .collect();
        for id in ids {
            self.pump_replay(conn, &id);
        }
    }

    /// Sends what the replay's clock reached while its client keeps up, ends it at `to`,
    /// and reads ahead.
    fn pump_replay(&mut self, conn: ConnId, id: &str) {
        let key = (conn, id.to_owned());
        let now = self.now;
        loop {
            let blocked = self.blocked(conn);
            let Some(replay) = self.replays.get_mut(&key) else {
                return;
            };
            replay.tick(now, blocked);
            if blocked {
                break;
            }
            if let Some(position) = replay.due() {
                let message = ServerMessage::Position {
                    topic: replay.topic.clone(),
                    position,
                };
                // Not counted as fan-out: that counts live positions of the stream.
                if !self.send_control(conn, frame(&message)) {
                    return;
                }
                continue;
            }
            if replay.finished() {
                let topic = replay.topic.clone();
                self.replays.remove(&key);
                self.send_control(conn, frame(&ServerMessage::ReplayEnd { topic }));
                return;
            }
            break;
        }
        let read_ahead = self.config.replay_read_ahead;
        let Some(replay) = self.replays.get(&key) else {
            return;
        };
        if let Some(limit) = replay.wants_page(read_ahead) {
            let request = self.registry.new_request();
            let command = Command::LoadReplayPage {
                request,
                conn,
                devices: replay.devices.clone(),
                after: replay.cursor.clone(),
                to: replay.to,
                limit,
            };
            if let Some(replay) = self.replays.get_mut(&key) {
                replay.request = Some((request, limit));
            }
            self.replay_requests.insert(request, key);
            self.out.push_back(command);
        }
    }
}

impl Drop for LiveHub {
    /// A shard that ends gives its replays' slots back to the instance.
    fn drop(&mut self) {
        self.replay_budget.give_back(self.replay_slots);
    }
}

/// A connection with more than `threshold` bytes queued (or gone) is behind: its replays'
/// clocks stop.
fn is_blocked(registry: &Registry, threshold: u64, conn: ConnId) -> bool {
    registry
        .get(conn)
        .is_none_or(|c| c.out.queued() > threshold)
}
