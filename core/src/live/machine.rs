//! [`LiveHub`]: the live fan-out decisions, fed inputs and polled for commands.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::auth::{Principal, Visibility};
use super::command::{close_code, close_reason, Command, ConnId, RequestId};
use super::config::LiveConfig;
use super::device_map::DeviceMap;
use super::ordering::{JumpRule, Tracker, Verdict};
use super::outbound::Offer;
use super::registry::{Held, Registry, SubState};
use super::stats::LiveStats;
use super::timers::PingSchedule;
use crate::decode::decode_position;
use crate::faulty::fault_reason;
use crate::stream::EntryId;
use crate::wire::{
    encode, parse_client_message, position_message, BadRequest, BadRequestReason, ClientMessage,
    ErrorCode, ServerMessage, Topic, WirePosition,
};
use crate::UnixMillis;

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

/// The live fan-out state machine. After every `handle_*` call, drain
/// [`poll_command`](LiveHub::poll_command) until it returns `None`, then wait at most until
/// [`poll_timeout`](LiveHub::poll_timeout) before calling
/// [`handle_timeout`](LiveHub::handle_timeout).
#[derive(Debug)]
pub struct LiveHub {
    config: LiveConfig,
    now: UnixMillis,
    out: VecDeque<Command>,
    registry: Registry,
    map: DeviceMap,
    tracker: Tracker,
    pings: PingSchedule,
    shutting_down: bool,
    stats: LiveStats,
}

impl LiveHub {
    pub fn new(config: LiveConfig, now: UnixMillis) -> LiveHub {
        let tracker = Tracker::new(JumpRule {
            max_speed_kmh: config.max_speed_kmh,
            reanchor_gap_ms: config.reanchor_gap_ms,
            reanchor_after_fixes: config.reanchor_after_fixes,
        });
        LiveHub {
            config,
            now,
            out: VecDeque::new(),
            registry: Registry::default(),
            map: DeviceMap::default(),
            tracker,
            pings: PingSchedule::default(),
            shutting_down: false,
            stats: LiveStats::default(),
        }
    }

    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// The next command, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](LiveHub::handle_timeout) should be called next: the first
    /// connection's ping time. `None` with no connections.
    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        self.pings.first()
    }

    /// Counters, with the gauges as they are now.
    /// The cumulative counters, with the gauges (`connections`, `subscriptions`, `waiting`)
    /// left at zero: cheap enough to read after every input, where [`stats`](Self::stats)
    /// walks every connection.
    pub fn counters(&self) -> LiveStats {
        LiveStats {
            connections: 0,
            subscriptions: 0,
            waiting: 0,
            ..self.stats
        }
    }

    pub fn stats(&self) -> LiveStats {
        LiveStats {
            connections: self.registry.len() as u64,
            subscriptions: self.registry.subscriptions(),
            waiting: self.registry.conns().map(|c| c.waiting()).sum(),
            ..self.stats
        }
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

    /// A client completed the WebSocket upgrade with this principal (the shell has already
    /// checked its token). During shutdown it is closed at once with 1001. A second
    /// `handle_connected` for an id the hub knows is ignored.
    pub fn handle_connected(&mut self, now: UnixMillis, conn: ConnId, principal: Principal) {
        self.advance(now);
        if self.shutting_down {
            self.out.push_back(Command::Close {
                conn,
                code: close_code::GOING_AWAY,
                reason: close_reason::SHUTDOWN,
            });
            return;
        }
        if self.registry.insert(conn, principal) {
            self.pings
                .schedule(conn, self.now.plus(self.ping_interval()));
        }
    }

    /// One complete text message from the client.
    pub fn handle_client_text(&mut self, now: UnixMillis, conn: ConnId, text: &[u8]) {
        self.advance(now);
        if !self.is_open(conn) {
            return;
        }
        if text.len() > self.config.max_message_bytes {
            self.bad_request(conn, BadRequest::new(BadRequestReason::TooLarge));
            return;
        }
        match parse_client_message(text) {
            Err(bad) => self.bad_request(conn, bad),
            Ok(ClientMessage::Ping) => {
                self.send_control(conn, encode(&ServerMessage::Pong));
            }
            Ok(ClientMessage::Subscribe(topic)) => self.subscribe(conn, topic),
            Ok(ClientMessage::Unsubscribe(topic)) => self.unsubscribe(conn, topic),
        }
    }

    /// One complete binary message from the client: `bad_request`, like any message the
    /// protocol does not have.
    pub fn handle_client_binary(&mut self, now: UnixMillis, conn: ConnId) {
        self.advance(now);
        if self.is_open(conn) {
            self.bad_request(conn, BadRequest::new(BadRequestReason::Binary));
        }
    }

    /// The client sent a message over the hard limit (64 KiB, all its frames together): the
    /// shell stops reading it, and the connection is closed with 1009.
    pub fn handle_client_too_large(&mut self, now: UnixMillis, conn: ConnId) {
        self.advance(now);
        self.close(
            conn,
            close_code::MESSAGE_TOO_BIG,
            close_reason::MESSAGE_TOO_BIG,
        );
    }

    /// A WebSocket pong frame from the client: its pings are answered.
    pub fn handle_pong(&mut self, now: UnixMillis, conn: ConnId) {
        self.advance(now);
        if let Some(c) = self.registry.get_mut(conn) {
            c.unanswered_ping = None;
        }
    }

    /// The socket wrote `bytes` more bytes of what was sent to `conn`. Parked positions go
    /// out while the queue stays at or under the conflate threshold.
    pub fn handle_drained(&mut self, now: UnixMillis, conn: ConnId, bytes: u64) {
        self.advance(now);
        if let Some(c) = self.registry.get_mut(conn) {
            c.out.record_drained(bytes);
            self.flush(conn);
        }
    }

    /// The connection is gone (client closed it, read or write failed). Nothing is sent.
    pub fn handle_closed(&mut self, now: UnixMillis, conn: ConnId) {
        self.advance(now);
        self.forget(conn);
    }

    // -----------------------------------------------------------------------------------
    // Answers to Authorize and LoadSnapshot

    /// The visibility of the event a [`Command::Authorize`] asked about. Allowed: `subscribed`
    /// and a [`Command::LoadSnapshot`]; not allowed or unknown: `forbidden`, with the same
    /// message either way.
    pub fn handle_authorization(
        &mut self,
        now: UnixMillis,
        request: RequestId,
        visibility: Visibility,
    ) {
        self.advance(now);
        let Some((conn, topic)) = self.registry.request(request) else {
            return;
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
        let load = self.registry.new_request();
        self.registry.set_sub(
            conn,
            topic,
            SubState::Loading {
                request: load,
                held: BTreeMap::new(),
            },
        );
        let subscribed = encode(&ServerMessage::Subscribed {
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
            });
        }
    }

    /// The visibility lookup of a [`Command::Authorize`] failed (Postgres away): the client
    /// gets an error with [`UNAVAILABLE_CODE`] and is not subscribed.
    pub fn handle_authorization_failed(&mut self, now: UnixMillis, request: RequestId) {
        self.advance(now);
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

    /// The stored positions a [`Command::LoadSnapshot`] found (any order, any number per
    /// device). The snapshot is, per device now in the event, the newest of the stored rows
    /// and the last position the live path accepted; it is sent, then the positions held
    /// while it loaded that are newer than it, then live positions.
    pub fn handle_snapshot(
        &mut self,
        now: UnixMillis,
        request: RequestId,
        rows: Vec<WirePosition>,
    ) {
        self.advance(now);
        let Some((conn, topic)) = self.registry.request(request) else {
            return;
        };
        let merged = self.merge_snapshot(topic.event_id(), rows);
        let floors = merged
            .iter()
            .map(|(device, p)| (Arc::<str>::from(device.as_str()), UnixMillis(p.ts)))
            .collect();
        let held = match self
            .registry
            .set_sub(conn, topic, SubState::Live { floors })
        {
            Some(SubState::Loading { held, .. }) => held,
            _ => BTreeMap::new(),
        };
        self.stats.snapshots += 1;
        let snapshot = encode(&ServerMessage::Snapshot {
            topic: topic.to_string(),
            positions: merged.into_values().collect(),
        });
        let mut open = self.send_control(conn, snapshot);
        for (device, Held { ts, bytes }) in held {
            if open {
                open = self.offer_live(conn, topic, &device, ts, &bytes);
            } else {
                self.stats.dropped_messages += 1;
            }
        }
    }

    /// A [`Command::LoadSnapshot`] failed. The client was already told `subscribed`, and
    /// may not get positions without a snapshot first: it gets an error with
    /// [`UNAVAILABLE_CODE`] and then `unsubscribed`, so that its view of its subscriptions
    /// stays right, and may subscribe again.
    pub fn handle_snapshot_failed(&mut self, now: UnixMillis, request: RequestId) {
        self.advance(now);
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
            let unsubscribed = encode(&ServerMessage::Unsubscribed {
                topic: topic.to_string(),
            });
            self.send_control(conn, unsubscribed);
        }
    }

    // -----------------------------------------------------------------------------------
    // Stream input and the device map

    /// Entries read by this instance's broadcast group, in stream order.
    pub fn handle_positions(&mut self, now: UnixMillis, entries: Vec<(EntryId, Option<Bytes>)>) {
        self.advance(now);
        for (_id, payload) in entries {
            self.stats.broadcast_records += 1;
            let Some(Ok(position)) = payload.as_deref().map(decode_position) else {
                self.stats.decode_errors += 1;
                continue;
            };
            let events: Vec<Uuid> = match self.map.events_of(&position.device_id) {
                Some(events) => events.iter().copied().collect(),
                None => {
                    self.stats.orphan_records += 1;
                    Vec::new()
                }
            };
            if fault_reason(&position, self.now, &self.config.faulty).is_some() {
                self.stats.faulty_dropped += 1;
                continue;
            }
            let verdict = self.tracker.judge(&position);
            match verdict {
                Verdict::Stale => self.stats.stale_dropped += 1,
                Verdict::Jump => self.stats.jump_dropped += 1,
                Verdict::Reanchored => self.stats.reanchored += 1,
                Verdict::Accepted => {}
            }
            if !verdict.is_accepted() {
                continue;
            }
            self.stats.accepted += 1;
            if events.is_empty() {
                continue;
            }
            let device: Arc<str> = Arc::from(position.device_id.as_str());
            for event in events {
                let topic = Topic(event);
                let subscribers = self.registry.subscribers(topic);
                if subscribers.is_empty() {
                    continue;
                }
                // Encoded once per topic; every subscriber shares these bytes.
                let bytes = position_message(&topic, &position);
                for conn in subscribers {
                    self.deliver(conn, topic, &device, position.ts, &bytes);
                }
            }
        }
    }

    /// A new device-to-event map replaces the old one whole. A version not above the one in
    /// use is ignored (a refresh that finished late). Subscriptions stay; the next position
    /// of a device goes to the events it belongs to now.
    pub fn handle_device_map(
        &mut self,
        now: UnixMillis,
        version: u64,
        map: BTreeMap<String, BTreeSet<Uuid>>,
    ) {
        self.advance(now);
        if self.map.version().is_some_and(|v| version <= v) {
            return;
        }
        self.map = DeviceMap::new(version, map);
    }

    // -----------------------------------------------------------------------------------
    // Time and shutdown

    /// Time passed: connections due are pinged, or closed with 1008 when a ping has been
    /// waiting for its pong for two intervals. A spurious call does nothing.
    pub fn handle_timeout(&mut self, now: UnixMillis) {
        self.advance(now);
        let now = self.now;
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
            self.out.push_back(Command::Ping { conn });
            self.pings.schedule(conn, now.plus(interval));
        }
    }

    /// Closes every connection with 1001; connections arriving later are closed at once.
    pub fn handle_shutdown(&mut self, now: UnixMillis) {
        self.advance(now);
        self.shutting_down = true;
        for conn in self.registry.ids() {
            self.close(conn, close_code::GOING_AWAY, close_reason::SHUTDOWN);
        }
        self.pings.clear();
    }

    // -----------------------------------------------------------------------------------
    // Internals

    fn advance(&mut self, now: UnixMillis) {
        // A clock that steps back must not make timers fire late; keep the newest.
        self.now = self.now.max(now);
    }

    fn ping_interval(&self) -> u64 {
        self.config.ping_interval_ms.max(1)
    }

    fn subscribe(&mut self, conn: ConnId, topic: Topic) {
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
            .set_sub(conn, topic, SubState::Authorizing { request });
        self.out.push_back(Command::Authorize {
            request,
            conn,
            topic,
        });
    }

    fn unsubscribe(&mut self, conn: ConnId, topic: Topic) {
        self.drop_sub(conn, topic);
        let unsubscribed = encode(&ServerMessage::Unsubscribed {
            topic: topic.to_string(),
        });
        self.send_control(conn, unsubscribed);
    }

    /// Ends `conn`'s subscription to `topic`, in whatever state, counting what was waiting.
    fn drop_sub(&mut self, conn: ConnId, topic: Topic) {
        if let Some(SubState::Loading { held, .. }) = self.registry.remove_sub(conn, topic) {
            self.stats.dropped_messages += held.len() as u64;
        }
        if let Some(c) = self.registry.get_mut(conn) {
            self.stats.dropped_messages += c.out.discard_topic(topic);
        }
    }

    /// Per device now in `event`: the newest stored row or last accepted live fix, by
    /// fix time (the stored row on a tie: it is what Postgres keeps). Rows of devices not
    /// in the event are ignored.
    fn merge_snapshot(
        &self,
        event: Uuid,
        rows: Vec<WirePosition>,
    ) -> BTreeMap<String, WirePosition> {
        let devices: BTreeSet<&str> = self.map.devices_of(event).collect();
        let mut merged: BTreeMap<String, WirePosition> = BTreeMap::new();
        for row in rows {
            if !devices.contains(row.device_id.as_str()) {
                continue;
            }
            match merged.get(&row.device_id) {
                Some(kept) if kept.ts >= row.ts => {}
                _ => {
                    merged.insert(row.device_id.clone(), row);
                }
            }
        }
        for device in devices {
            let Some(fix) = self.tracker.anchor(device) else {
                continue;
            };
            match merged.get(device) {
                Some(kept) if kept.ts >= fix.ts.as_i64() => {}
                _ => {
                    merged.insert(device.to_owned(), fix.to_wire(device));
                }
            }
        }
        merged
    }

    /// One position message for one subscriber of its topic.
    fn deliver(
        &mut self,
        conn: ConnId,
        topic: Topic,
        device: &Arc<str>,
        ts: UnixMillis,
        bytes: &Bytes,
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
                let replaced = held.insert(
                    Arc::clone(device),
                    Held {
                        ts,
                        bytes: bytes.clone(),
                    },
                );
                if replaced.is_some() {
                    self.stats.conflated_messages += 1;
                }
            }
            SubState::Live { .. } => {
                self.stats.position_deliveries += 1;
                self.offer_live(conn, topic, device, ts, bytes);
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
        bytes: &Bytes,
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
        match c.out.offer(topic, device, bytes, ts, threshold) {
            Offer::Send => {
                c.out.record_sent(bytes.len());
                self.stats.fanout_messages += 1;
                self.out.push_back(Command::Send {
                    conn,
                    bytes: bytes.clone(),
                    fix_ts: Some(ts),
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
        while let Some((bytes, fix_ts)) = c.out.pop_ready(threshold) {
            c.out.record_sent(bytes.len());
            self.stats.fanout_messages += 1;
            self.out.push_back(Command::Send {
                conn,
                bytes,
                fix_ts: Some(fix_ts),
            });
        }
        self.check_backpressure(conn)
    }

    /// Closes `conn` with 1013 when its buffer passed the back-pressure threshold; false
    /// once `conn` is closed.
    fn check_backpressure(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.registry.get(conn) else {
            return false;
        };
        if c.out.buffered() > self.config.backpressure_threshold_bytes {
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

    /// Sends a message that is never conflated; false once `conn` is closed.
    fn send_control(&mut self, conn: ConnId, bytes: Bytes) -> bool {
        let Some(c) = self.registry.get_mut(conn) else {
            return false;
        };
        c.out.record_sent(bytes.len());
        self.out.push_back(Command::Send {
            conn,
            bytes,
            fix_ts: None,
        });
        self.check_backpressure(conn)
    }

    fn send_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        topic: Option<String>,
        message: String,
    ) -> bool {
        let error = encode(&ServerMessage::Error {
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
        if !self.send_error(conn, ErrorCode::BadRequest, bad.topic, message) {
            return;
        }
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
        true
    }
}
