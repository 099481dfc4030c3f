//! The live hub as the simulation drives it, with an optional planted defect.
//!
//! [`SimHub`] forwards everything to the real [`LiveHub`]. With a [`LiveDefect`] other than
//! `None` it misbehaves on purpose, around the hub, never inside it, so that tests can show
//! the live checker notices.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use uuid::Uuid;

use processor_core::faulty::fault_reason;
use processor_core::live::{
    Command, ConnId, LiveConfig, LiveHub, LiveStats, Principal, RequestId, Visibility,
};
use processor_core::stream::EntryId;
use processor_core::wire::server::WirePosition;
use processor_core::wire::{position_message, Topic};
use processor_core::{decode_position, UnixMillis};

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
}

impl std::str::FromStr for LiveDefect {
    type Err = String;

    fn from_str(s: &str) -> Result<LiveDefect, String> {
        match s.trim() {
            "" | "none" => Ok(LiveDefect::None),
            "snapshot-not-held-back" => Ok(LiveDefect::SnapshotNotHeldBack),
            "order-not-enforced" => Ok(LiveDefect::OrderNotEnforced),
            "unbounded-queue" => Ok(LiveDefect::UnboundedQueue),
            other => Err(format!(
                "unknown live defect {other:?} (none, snapshot-not-held-back, order-not-enforced, unbounded-queue)"
            )),
        }
    }
}

/// The live hub, possibly with a planted defect.
pub struct SimHub {
    inner: LiveHub,
    defect: LiveDefect,
    extra: VecDeque<Command>,
    map: BTreeMap<String, BTreeSet<Uuid>>,
    loading: BTreeMap<RequestId, (ConnId, Topic)>,
    /// Subscriptions whose snapshot has gone out.
    live: BTreeSet<(ConnId, Topic)>,
    newest: BTreeMap<String, i64>,
    last_now: UnixMillis,
}

impl SimHub {
    pub fn new(config: LiveConfig, now: UnixMillis, defect: LiveDefect) -> SimHub {
        SimHub {
            inner: LiveHub::new(config, now),
            defect,
            extra: VecDeque::new(),
            map: BTreeMap::new(),
            loading: BTreeMap::new(),
            live: BTreeSet::new(),
            newest: BTreeMap::new(),
            last_now: now,
        }
    }

    pub fn config(&self) -> &LiveConfig {
        self.inner.config()
    }

    pub fn counters(&self) -> LiveStats {
        self.inner.counters()
    }

    pub fn poll_timeout(&self) -> Option<UnixMillis> {
        self.inner.poll_timeout()
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        if let Some(command) = self.extra.pop_front() {
            return Some(command);
        }
        let command = self.inner.poll_command()?;
        match &command {
            Command::LoadSnapshot {
                request,
                conn,
                topic,
                ..
            } => {
                self.loading.insert(*request, (*conn, *topic));
            }
            Command::Send { conn, bytes, .. } => {
                if let Some(topic) = snapshot_topic(bytes) {
                    self.live.insert((*conn, topic));
                }
                if self.defect == LiveDefect::UnboundedQueue {
                    self.inner
                        .handle_drained(self.last_now, *conn, bytes.len() as u64);
                }
            }
            Command::Close { conn, .. } => self.forget(*conn),
            _ => {}
        }
        Some(command)
    }

    fn forget(&mut self, conn: ConnId) {
        self.loading.retain(|_, (c, _)| *c != conn);
        self.live.retain(|(c, _)| *c != conn);
    }

    pub fn handle_connected(&mut self, now: UnixMillis, conn: ConnId, principal: Principal) {
        self.last_now = now;
        self.inner.handle_connected(now, conn, principal);
    }

    pub fn handle_client_text(&mut self, now: UnixMillis, conn: ConnId, text: &[u8]) {
        self.last_now = now;
        if text.starts_with(br#"{"type":"unsubscribe""#)
            || text.starts_with(br#"{"type":"subscribe""#)
        {
            // A new subscription starts over; the old one is no longer live.
            if let Some(topic) = text_topic(text) {
                self.live.remove(&(conn, topic));
                self.loading.retain(|_, s| *s != (conn, topic));
            }
        }
        self.inner.handle_client_text(now, conn, text);
    }

    pub fn handle_pong(&mut self, now: UnixMillis, conn: ConnId) {
        self.last_now = now;
        self.inner.handle_pong(now, conn);
    }

    pub fn handle_drained(&mut self, now: UnixMillis, conn: ConnId, bytes: u64) {
        self.last_now = now;
        if self.defect != LiveDefect::UnboundedQueue {
            self.inner.handle_drained(now, conn, bytes);
        }
    }

    pub fn handle_closed(&mut self, now: UnixMillis, conn: ConnId) {
        self.last_now = now;
        self.forget(conn);
        self.inner.handle_closed(now, conn);
    }

    pub fn handle_authorization(
        &mut self,
        now: UnixMillis,
        request: RequestId,
        visibility: Visibility,
    ) {
        self.last_now = now;
        self.inner.handle_authorization(now, request, visibility);
    }

    pub fn handle_authorization_failed(&mut self, now: UnixMillis, request: RequestId) {
        self.last_now = now;
        self.inner.handle_authorization_failed(now, request);
    }

    pub fn handle_snapshot(
        &mut self,
        now: UnixMillis,
        request: RequestId,
        rows: Vec<WirePosition>,
    ) {
        self.last_now = now;
        self.loading.remove(&request);
        self.inner.handle_snapshot(now, request, rows);
    }

    pub fn handle_snapshot_failed(&mut self, now: UnixMillis, request: RequestId) {
        self.last_now = now;
        self.loading.remove(&request);
        self.inner.handle_snapshot_failed(now, request);
    }

    pub fn handle_device_map(
        &mut self,
        now: UnixMillis,
        version: u64,
        map: BTreeMap<String, BTreeSet<Uuid>>,
    ) {
        self.last_now = now;
        self.map = map.clone();
        self.inner.handle_device_map(now, version, map);
    }

    pub fn handle_timeout(&mut self, now: UnixMillis) {
        self.last_now = now;
        self.inner.handle_timeout(now);
    }

    pub fn handle_shutdown(&mut self, now: UnixMillis) {
        self.last_now = now;
        self.inner.handle_shutdown(now);
    }

    pub fn handle_positions(&mut self, now: UnixMillis, entries: Vec<(EntryId, Option<Bytes>)>) {
        self.last_now = now;
        if self.defect == LiveDefect::SnapshotNotHeldBack
            || self.defect == LiveDefect::OrderNotEnforced
        {
            for (_, payload) in &entries {
                self.misdeliver(now, payload.as_deref());
            }
        }
        self.inner.handle_positions(now, entries);
    }

    /// What the defective fan-out sends on top of the hub's own.
    fn misdeliver(&mut self, now: UnixMillis, payload: Option<&[u8]>) {
        let Some(Ok(position)) = payload.map(decode_position) else {
            return;
        };
        if fault_reason(&position, now, &self.config().faulty).is_some() {
            return;
        }
        let events = self
            .map
            .get(&position.device_id)
            .cloned()
            .unwrap_or_default();
        let targets: Vec<(ConnId, Topic)> = match self.defect {
            LiveDefect::SnapshotNotHeldBack => self.loading.values().copied().collect(),
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
                    bytes: position_message(&topic, &position),
                    fix_ts: Some(position.ts),
                });
            }
        }
    }
}

fn snapshot_topic(bytes: &[u8]) -> Option<Topic> {
    if !bytes.starts_with(br#"{"type":"snapshot""#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value["topic"].as_str()?.parse().ok()
}

fn text_topic(text: &[u8]) -> Option<Topic> {
    let value: serde_json::Value = serde_json::from_slice(text).ok()?;
    value["topic"].as_str()?.parse().ok()
}
