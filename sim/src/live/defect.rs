//! The live hub as the simulation drives it, with an optional planted defect.
//!
//! [`SimHub`] forwards every [`Input`] to the real [`LiveHub`] and passes its commands on.
//! With a [`LiveDefect`] other than `None` it misbehaves on purpose, around the hub, never
//! inside it, so that tests can show the live checker notices. The driver wraps every shard
//! and the single-shard reference in one, each with the same defect: the position defects
//! are then in both systems alike (and caught by the checker), while
//! [`LiveDefect::MapToFirstShardOnly`] is a fault of the sharding itself (and caught by the
//! comparison with the reference). The defects of the edge's rules (token expiry, visibility
//! re-checks, message rate) are shell mistakes around a correct hub, in both systems alike,
//! and caught by the reference model's own token deadlines, claims and token bucket.
//! [`LiveDefect::ResumeNotFloored`] is a resume that forgets its floors, caught by the
//! model's judgement of what a resumed client must see.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use processor_core::faulty::fault_reason;
use processor_core::live::{
    close_code, Command, ConnId, DeviceMap, HistoryQuery, Input, LiveConfig, LiveHub, LiveStats,
    RequestId, Visibility,
};
use processor_core::websocket::{ClientFrame, Frame};
use processor_core::wire::{position_frame, Topic};
use processor_core::{MonoMillis, Now, Position, UnixMillis};
use uuid::Uuid;

/// A defect planted around the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiveDefect {
    /// The hub as it is.
    #[default]
    None,
    /// Positions of a topic whose snapshot is loading go straight out instead of being held.
    SnapshotNotHeldBack,
    /// A position older than its device's newest goes out all the same.
    OrderNotEnforced,
    /// The hub is told every frame was written the moment it is sent: a client that does not
    /// read is never conflated nor closed, and its queue grows without bound.
    UnboundedQueue,
    /// Device map refreshes reach the first shard only; the others keep the map they
    /// started with (a shell that hands the new map to one shard instead of all).
    MapToFirstShardOnly,
    /// `Close` commands with 4001 (token expired) are dropped: the shell keeps the socket of
    /// a connection whose token expired (the hub has forgotten it all the same).
    ExpiryIgnored,
    /// Every visibility look-up of an event is answered with the first answer the shell
    /// got for it (a cache that never expires): an event made private keeps reaching those
    /// it no longer allows.
    VisibilityCachedForever,
    /// The hub is built with no message rate (a shell that does not pass
    /// `LIVE_WS_MAX_MESSAGES_PER_S` on), while the clients' budget is the configured one.
    RateNotPassedOn,
    /// A resume (`since`) forgets its floors: the positions that arrived while its snapshot
    /// loaded, which the snapshot already holds (the live path's recent fixes are merged
    /// in), follow it all the same.
    ResumeNotFloored,
}

impl std::str::FromStr for LiveDefect {
    type Err = String;

    fn from_str(s: &str) -> Result<LiveDefect, String> {
        match s.trim() {
            "" | "none" => Ok(LiveDefect::None),
            "snapshot-not-held-back" => Ok(LiveDefect::SnapshotNotHeldBack),
            "order-not-enforced" => Ok(LiveDefect::OrderNotEnforced),
            "unbounded-queue" => Ok(LiveDefect::UnboundedQueue),
            "map-to-first-shard-only" => Ok(LiveDefect::MapToFirstShardOnly),
            "expiry-ignored" => Ok(LiveDefect::ExpiryIgnored),
            "visibility-cached-forever" => Ok(LiveDefect::VisibilityCachedForever),
            "rate-not-passed-on" => Ok(LiveDefect::RateNotPassedOn),
            "resume-not-floored" => Ok(LiveDefect::ResumeNotFloored),
            other => Err(format!(
                "unknown live defect {other:?} (none, snapshot-not-held-back, order-not-enforced, unbounded-queue, map-to-first-shard-only, expiry-ignored, visibility-cached-forever, rate-not-passed-on, resume-not-floored)"
            )),
        }
    }
}

/// One live hub shard, possibly with a planted defect.
pub struct SimHub {
    inner: LiveHub,
    defect: LiveDefect,
    /// Which shard this is (the single-shard reference is shard 0).
    shard: usize,
    extra: VecDeque<Command>,
    map: Arc<DeviceMap>,
    loading: BTreeMap<RequestId, (ConnId, Topic)>,
    /// Subscriptions whose snapshot has gone out.
    live: BTreeSet<(ConnId, Topic)>,
    newest: BTreeMap<String, i64>,
    last_now: UnixMillis,
    /// `VisibilityCachedForever`: the event each authorization request is for, and the
    /// first visibility answered per event.
    authorizing: BTreeMap<RequestId, Uuid>,
    cached: BTreeMap<Uuid, Visibility>,
    /// The configuration the simulation asked for (the hub's may differ under a defect).
    config: LiveConfig,
    /// `ResumeNotFloored`: the resumes loading, and the position frames each got meanwhile
    /// (until its snapshot goes out, when they follow it).
    resume_loads: BTreeMap<RequestId, (ConnId, Topic)>,
    resume_held: BTreeMap<(ConnId, Topic), Vec<Frame>>,
    /// Resumes answered whose snapshot has not gone out yet.
    resume_answered: BTreeSet<(ConnId, Topic)>,
}

impl SimHub {
    pub fn new(config: LiveConfig, now: UnixMillis, defect: LiveDefect, shard: usize) -> SimHub {
        let mut built = config.clone();
        if defect == LiveDefect::RateNotPassedOn {
            built.max_messages_per_s = 1_000_000;
        }
        SimHub {
            inner: LiveHub::new(built, clocks(now)),
            defect,
            shard,
            extra: VecDeque::new(),
            map: Arc::new(DeviceMap::default()),
            loading: BTreeMap::new(),
            live: BTreeSet::new(),
            newest: BTreeMap::new(),
            last_now: now,
            authorizing: BTreeMap::new(),
            cached: BTreeMap::new(),
            config,
            resume_loads: BTreeMap::new(),
            resume_held: BTreeMap::new(),
            resume_answered: BTreeSet::new(),
        }
    }

    /// The configuration the simulation asked for.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    pub fn counters(&self) -> LiveStats {
        self.inner.counters()
    }

    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        self.inner
            .poll_timeout()
            .map(|t| UnixMillis(i64::try_from(t.0).unwrap_or(i64::MAX)))
    }

    /// Whether the hub holds positions of `conn` parked (its queue over the conflate
    /// threshold): a newer one of the same (topic, device) would then replace one.
    pub fn parks(&self, conn: ConnId) -> bool {
        match (
            self.inner.buffered_bytes(conn),
            self.inner.queued_bytes(conn),
        ) {
            (Some(buffered), Some(queued)) => buffered > queued,
            _ => false,
        }
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        loop {
            let command = self.next_command()?;
            match command {
                Command::Close {
                    conn,
                    code: close_code::TOKEN_EXPIRED,
                    ..
                } if self.defect == LiveDefect::ExpiryIgnored => self.forget(conn),
                command => return Some(command),
            }
        }
    }

    fn next_command(&mut self) -> Option<Command> {
        if let Some(command) = self.extra.pop_front() {
            return Some(command);
        }
        let command = self.inner.poll_command()?;
        match &command {
            Command::LoadSnapshot {
                request,
                conn,
                topic,
                history,
                ..
            } => {
                self.loading.insert(*request, (*conn, *topic));
                if self.defect == LiveDefect::ResumeNotFloored
                    && matches!(history, HistoryQuery::Since { .. })
                {
                    self.resume_loads.insert(*request, (*conn, *topic));
                    self.resume_held.insert((*conn, *topic), Vec::new());
                }
            }
            Command::Send { conn, frame } => {
                if !self.resume_answered.is_empty() {
                    if let Some(topic) = snapshot_topic(frame.payload()) {
                        if self.resume_answered.remove(&(*conn, topic)) {
                            let held = self.resume_held.remove(&(*conn, topic));
                            self.extra.extend(
                                held.into_iter()
                                    .flatten()
                                    .map(|frame| Command::Send { conn: *conn, frame }),
                            );
                        }
                    }
                }
                // Which subscriptions are live matters to the position defects only (and
                // reading every snapshot costs).
                if self.reads_positions() {
                    if let Some(topic) = snapshot_topic(frame.payload()) {
                        self.live.insert((*conn, topic));
                    }
                }
                if self.defect == LiveDefect::UnboundedQueue {
                    let written = Input::Written {
                        conn: *conn,
                        bytes: frame.len() as u64,
                    };
                    self.inner.handle(clocks(self.last_now), written);
                }
            }
            Command::Close { conn, .. } => self.forget(*conn),
            Command::LoadReplaySnapshot { .. } | Command::LoadReplayPage { .. } => {}
            Command::Authorize { request, topic, .. } => {
                if self.defect == LiveDefect::VisibilityCachedForever {
                    self.authorizing.insert(*request, topic.event_id());
                }
            }
            Command::VerifyToken { .. } => {}
        }
        Some(command)
    }

    fn forget(&mut self, conn: ConnId) {
        self.loading.retain(|_, (c, _)| *c != conn);
        self.live.retain(|(c, _)| *c != conn);
        self.forget_resumes(|(c, _)| *c == conn);
    }

    fn forget_resumes(&mut self, gone: impl Fn(&(ConnId, Topic)) -> bool) {
        self.resume_loads.retain(|_, key| !gone(key));
        self.resume_held.retain(|key, _| !gone(key));
        self.resume_answered.retain(|key| !gone(key));
    }

    /// Takes one input, as [`LiveHub::handle`] does.
    pub fn handle(&mut self, now: UnixMillis, mut input: Input) {
        self.last_now = now;
        if let Input::Visibility {
            request,
            visibility: Ok(visibility),
        } = &mut input
        {
            if let Some(event) = self.authorizing.remove(request) {
                *visibility = *self.cached.entry(event).or_insert(*visibility);
            }
        }
        match &input {
            // A new subscription starts over; the old one is no longer live.
            Input::Frame {
                conn,
                frame: Ok(ClientFrame::Text(text)),
            } if self.reads_positions()
                && (text.starts_with(br#"{"type":"unsubscribe""#)
                    || text.starts_with(br#"{"type":"subscribe""#)) =>
            {
                if let Some(topic) = text_topic(text) {
                    self.live.remove(&(*conn, topic));
                    self.loading.retain(|_, s| *s != (*conn, topic));
                    self.forget_resumes(|key| *key == (*conn, topic));
                }
            }
            Input::Written { .. } if self.defect == LiveDefect::UnboundedQueue => return,
            Input::Closed { conn } => self.forget(*conn),
            Input::Snapshot { request, rows } => {
                self.loading.remove(request);
                if let Some(key) = self.resume_loads.remove(request) {
                    if rows.is_ok() {
                        self.resume_answered.insert(key);
                    } else {
                        self.resume_held.remove(&key);
                    }
                }
            }
            Input::DeviceMap(map) => {
                if self.defect == LiveDefect::MapToFirstShardOnly
                    && self.shard > 0
                    && self.inner.device_map_version().is_some()
                {
                    return;
                }
                if map.version() > self.map.version() {
                    self.map = Arc::clone(map);
                }
            }
            _ => {}
        }
        self.inner.handle(clocks(now), input);
    }

    /// True when the planted defect needs the decoded positions of every stream read
    /// ([`read_positions`](Self::read_positions)).
    pub fn reads_positions(&self) -> bool {
        matches!(
            self.defect,
            LiveDefect::SnapshotNotHeldBack
                | LiveDefect::OrderNotEnforced
                | LiveDefect::ResumeNotFloored
        )
    }

    /// The decoded positions a batch was made of, seen before the batch itself: only the
    /// position defects look at them, to send what the hub would not.
    pub fn read_positions(&mut self, now: UnixMillis, positions: &[Position]) {
        self.last_now = now;
        if self.reads_positions() {
            for position in positions {
                self.misdeliver(now, position);
            }
        }
    }

    /// What the defective fan-out sends on top of the hub's own.
    fn misdeliver(&mut self, now: UnixMillis, position: &Position) {
        if fault_reason(position, now, &self.config().faulty).is_some() {
            return;
        }
        let events = self
            .map
            .events_of(&position.device_id)
            .cloned()
            .unwrap_or_default();
        let targets: Vec<(ConnId, Topic)> = match self.defect {
            LiveDefect::SnapshotNotHeldBack => self.loading.values().copied().collect(),
            LiveDefect::ResumeNotFloored => {
                // What the live path accepts: newer than the device's newest.
                let newest = self
                    .newest
                    .entry(position.device_id.clone())
                    .or_insert(i64::MIN);
                let newer = position.ts.as_i64() > *newest;
                *newest = (*newest).max(position.ts.as_i64());
                if newer {
                    for ((_, topic), held) in &mut self.resume_held {
                        if events.contains(&topic.event_id()) {
                            held.push(position_frame(topic, position));
                        }
                    }
                }
                return;
            }
            LiveDefect::OrderNotEnforced => {
                let newest = self
                    .newest
                    .entry(position.device_id.clone())
                    .or_insert(i64::MIN);
                let older = position.ts.as_i64() < *newest;
                *newest = (*newest).max(position.ts.as_i64());
                if !older {
                    return;
                }
                self.live.iter().copied().collect()
            }
            _ => return,
        };
        for (conn, topic) in targets {
            if events.contains(&topic.event_id()) {
                self.extra.push_back(Command::Send {
                    conn,
                    frame: position_frame(&topic, position),
                });
            }
        }
    }
}

fn snapshot_topic(payload: &[u8]) -> Option<Topic> {
    if !payload.starts_with(br#"{"type":"snapshot""#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value["topic"].as_str()?.parse().ok()
}

fn text_topic(text: &[u8]) -> Option<Topic> {
    let value: serde_json::Value = serde_json::from_slice(text).ok()?;
    value["topic"].as_str()?.parse().ok()
}

/// The model layer's one timeline: the hub's monotonic clock reads the wall clock's
/// milliseconds (steps of the wall clock are the durable swarm's and the core tests'
/// business).
fn clocks(now: UnixMillis) -> Now {
    Now {
        mono: MonoMillis(u64::try_from(now.as_i64()).unwrap_or(0)),
        wall: now,
    }
}
