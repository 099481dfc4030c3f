//! Connections, their subscriptions and the topic index used by the fan-out.
//!
//! A subscription goes through three states: `Authorizing` (the shell looks up the event's
//! visibility), `Loading` (`subscribed` was sent, the snapshot is loading, live positions
//! are held) and `Live`. Only `Loading` and `Live` subscriptions are in the topic index and
//! count as subscriptions; every topic counts against the per-connection limit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::auth::Principal;
use super::command::{ConnId, RequestId};
use super::held::HeldPositions;
use super::history::HistoryQuery;
use super::outbound::Outbound;
use super::rate::RateBucket;
use crate::wire::{SubscribeOptions, Topic};
use crate::{MonoMillis, UnixMillis};

#[derive(Debug)]
pub(crate) enum SubState {
    Authorizing {
        request: RequestId,
        options: SubscribeOptions,
    },
    Loading {
        request: RequestId,
        query: HistoryQuery,
        /// What arrived while loading.
        held: HeldPositions,
    },
    Live {
        /// Per device, the fix time the snapshot carried, until a newer position passed it.
        /// The snapshot can be ahead of the live path (Postgres stored a fix this instance
        /// has not read yet); nothing at or before it may follow it.
        floors: BTreeMap<Arc<str>, UnixMillis>,
    },
}

impl SubState {
    /// True once `subscribed` was sent.
    pub(crate) fn is_subscribed(&self) -> bool {
        !matches!(self, SubState::Authorizing { .. })
    }

    fn request(&self) -> Option<RequestId> {
        match self {
            SubState::Authorizing { request, .. } | SubState::Loading { request, .. } => {
                Some(*request)
            }
            SubState::Live { .. } => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub principal: Principal,
    pub bad_requests: u32,
    pub subs: BTreeMap<Topic, SubState>,
    pub out: Outbound,
    /// When the oldest unanswered ping was sent.
    pub unanswered_ping: Option<MonoMillis>,
    pub rate: RateBucket,
}

impl Connection {
    /// Position messages held or parked for this connection.
    pub(crate) fn waiting(&self) -> u64 {
        let held: usize = self
            .subs
            .values()
            .map(|s| match s {
                SubState::Loading { held, .. } => held.len(),
                _ => 0,
            })
            .sum();
        (held + self.out.parked_len()) as u64
    }
}

/// Every open connection, with indexes by topic and by pending request.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    conns: BTreeMap<ConnId, Connection>,
    by_topic: BTreeMap<Topic, BTreeSet<ConnId>>,
    requests: BTreeMap<RequestId, (ConnId, Topic)>,
    next_request: u64,
    subscriptions: u64,
}

impl Registry {
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn subscriptions(&self) -> u64 {
        self.subscriptions
    }

    /// The topics `conn` holds (authorizing, loading or live), in order.
    pub(crate) fn topics_of(&self, conn: ConnId) -> Vec<Topic> {
        self.conns
            .get(&conn)
            .map(|c| c.subs.keys().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    pub(crate) fn conns(&self) -> impl Iterator<Item = &Connection> {
        self.conns.values()
    }

    pub(crate) fn get(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(&conn)
    }

    pub(crate) fn get_mut(&mut self, conn: ConnId) -> Option<&mut Connection> {
        self.conns.get_mut(&conn)
    }

    /// Adds a connection; false (and nothing changed) when the id is already open.
    pub(crate) fn insert(&mut self, conn: ConnId, principal: Principal, rate: RateBucket) -> bool {
        if self.conns.contains_key(&conn) {
            return false;
        }
        self.conns.insert(
            conn,
            Connection {
                principal,
                bad_requests: 0,
                subs: BTreeMap::new(),
                out: Outbound::default(),
                unanswered_ping: None,
                rate,
            },
        );
        true
    }

    /// Removes a connection with all its subscriptions and requests; returns it so the
    /// caller can account for what was waiting.
    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<Connection> {
        let c = self.conns.remove(&conn)?;
        for (topic, state) in &c.subs {
            self.unindex(conn, *topic, state);
        }
        Some(c)
    }

    /// The connections subscribed (loading or live) to `topic`, in id order, into `into`
    /// (cleared first: the fan-out reuses one buffer).
    pub(crate) fn subscribers_into(&self, topic: Topic, into: &mut Vec<ConnId>) {
        into.clear();
        if let Some(s) = self.by_topic.get(&topic) {
            into.extend(s.iter().copied());
        }
    }

    /// The connection and topic waiting for `request`, if any still is.
    pub(crate) fn request(&self, request: RequestId) -> Option<(ConnId, Topic)> {
        self.requests.get(&request).copied()
    }

    /// A fresh request id, registered by the [`set_sub`](Registry::set_sub) that uses it.
    pub(crate) fn new_request(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Sets the state of `conn`'s subscription to `topic`, keeping the indexes right;
    /// returns the state it replaced.
    pub(crate) fn set_sub(
        &mut self,
        conn: ConnId,
        topic: Topic,
        state: SubState,
    ) -> Option<SubState> {
        let c = self.conns.get_mut(&conn)?;
        let subscribed = state.is_subscribed();
        let request = state.request();
        let old = c.subs.insert(topic, state);
        if let Some(old) = &old {
            self.unindex(conn, topic, old);
        }
        if subscribed {
            self.by_topic.entry(topic).or_default().insert(conn);
            self.subscriptions += 1;
        }
        if let Some(request) = request {
            self.requests.insert(request, (conn, topic));
        }
        old
    }

    /// Removes `conn`'s subscription to `topic`; returns its last state.
    pub(crate) fn remove_sub(&mut self, conn: ConnId, topic: Topic) -> Option<SubState> {
        let state = self.conns.get_mut(&conn)?.subs.remove(&topic)?;
        self.unindex(conn, topic, &state);
        Some(state)
    }

    fn unindex(&mut self, conn: ConnId, topic: Topic, state: &SubState) {
        if let Some(request) = state.request() {
            self.requests.remove(&request);
        }
        if state.is_subscribed() {
            self.subscriptions -= 1;
            if let Some(set) = self.by_topic.get_mut(&topic) {
                set.remove(&conn);
                if set.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }
}
