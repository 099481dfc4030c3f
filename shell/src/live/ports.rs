//! What the live path runs against: the events tables and the positions store
//! ([`LiveStore`]), and this instance's broadcast group on the stream ([`BroadcastPort`]).
//!
//! The service plugs in Postgres (a connection pool) and Redis ([`RedisBroadcast`]); the
//! simulation plugs in in-memory servers reached over a simulated network. The hub, the
//! broadcast consumer, the map refresh and the WebSocket server are the same code either way.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use deadpool_postgres::Pool;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use uuid::Uuid;

use processor_core::live::{HistoryQuery, ReplayKey, Visibility};
use processor_core::stream::EntryId;
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

use crate::postgres::events::{self, EventDetails, PublicEvent, QueryError};
use crate::postgres::tracks::TrackPoint;
use crate::redis_stream::broadcast::BroadcastGroup;
use crate::redis_stream::{blocking_connection, StreamError};

/// Device id to the events it belongs to through an entry.
pub type EventMembers = BTreeMap<String, BTreeSet<Uuid>>;

/// The look-ups of the live path.
pub trait LiveStore: Clone + Send + Sync + 'static {
    type Error: std::fmt::Display + Send + 'static;

    /// The event's visibility; [`Visibility::Unknown`] when there is no such event.
    fn visibility(
        &self,
        event: Uuid,
    ) -> impl Future<Output = Result<Visibility, Self::Error>> + Send;

    /// The newest non-faulty stored position of each of `devices` that has one, and the
    /// stored history `history` asks for (any order).
    fn snapshot(
        &self,
        devices: Vec<String>,
        history: HistoryQuery,
    ) -> impl Future<Output = Result<Vec<WirePosition>, Self::Error>> + Send;

    fn device_map(&self) -> impl Future<Output = Result<EventMembers, Self::Error>> + Send;

    /// The newest non-faulty stored position at or before `at` of each of `devices`, and
    /// the trail rows `history` asks for before those.
    fn replay_snapshot(
        &self,
        devices: Vec<String>,
        at: UnixMillis,
        history: HistoryQuery,
    ) -> impl Future<Output = Result<Vec<WirePosition>, Self::Error>> + Send;

    /// At most `limit` non-faulty stored positions of `devices` after the replay key
    /// `after` with `ts <= to`, in key order; fewer only when there are no more.
    fn replay_page(
        &self,
        devices: Vec<String>,
        after: ReplayKey,
        to: UnixMillis,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<WirePosition>, Self::Error>> + Send;

    /// At most `limit` non-faulty stored fixes of `device` with `after < ts <= to`, by
    /// `ts` (an export's page).
    fn track_page(
        &self,
        device: String,
        after: SystemTime,
        to: SystemTime,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<TrackPoint>, Self::Error>> + Send;

    /// Every device of the event's entries, sorted by id (an export's features).
    fn event_devices(
        &self,
        event: Uuid,
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;

    /// The public events, for the map page's picker.
    fn public_events(&self) -> impl Future<Output = Result<Vec<PublicEvent>, Self::Error>> + Send;

    /// One event with its entries (`GET /events/<uuid>`); `None` when there is no such
    /// event. Who may see it is decided by the caller, from its visibility.
    fn event_details(
        &self,
        event: Uuid,
    ) -> impl Future<Output = Result<Option<EventDetails>, Self::Error>> + Send;
}

/// This instance's broadcast group (contract section 6).
pub trait BroadcastPort: Clone + Send + Sync + 'static {
    type Error: std::fmt::Display + Send + 'static;
    type Reader: BroadcastReader<Error = Self::Error>;

    /// Sets the heartbeat, creates the group at `$` unless it exists, and opens the
    /// connection blocking reads go through. The heartbeat comes first, so that no other
    /// instance takes the new group for a dead one.
    fn open(&self) -> impl Future<Output = Result<Self::Reader, Self::Error>> + Send;

    /// Keeps this instance's heartbeat fresh.
    fn heartbeat(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Destroys the groups of instances whose heartbeat expired; returns their names.
    fn remove_dead_groups(&self) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;

    /// On clean shutdown: this instance's group and heartbeat go.
    fn destroy(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// How long a heartbeat lasts.
    fn ttl(&self) -> Duration;
}

/// Blocking reads of new entries, acknowledged on read.
pub trait BroadcastReader: Send + 'static {
    type Error: std::fmt::Display + Send + 'static;

    fn read(
        &mut self,
        count: usize,
    ) -> impl Future<Output = Result<Vec<(EntryId, Option<Bytes>)>, Self::Error>> + Send;
}

impl LiveStore for Pool {
    type Error = QueryError;

    async fn visibility(&self, event: Uuid) -> Result<Visibility, QueryError> {
        events::event_visibility(self, event).await
    }

    async fn snapshot(
        &self,
        devices: Vec<String>,
        history: HistoryQuery,
    ) -> Result<Vec<WirePosition>, QueryError> {
        crate::postgres::history::load_history(self, &devices, history).await
    }

    async fn device_map(&self) -> Result<EventMembers, QueryError> {
        events::load_device_map(self).await
    }

    async fn replay_snapshot(
        &self,
        devices: Vec<String>,
        at: UnixMillis,
        history: HistoryQuery,
    ) -> Result<Vec<WirePosition>, QueryError> {
        crate::postgres::replay::snapshot_at(self, &devices, at, history).await
    }

    async fn replay_page(
        &self,
        devices: Vec<String>,
        after: ReplayKey,
        to: UnixMillis,
        limit: usize,
    ) -> Result<Vec<WirePosition>, QueryError> {
        crate::postgres::replay::page(self, &devices, after, to, limit).await
    }

    async fn track_page(
        &self,
        device: String,
        after: SystemTime,
        to: SystemTime,
        limit: i64,
    ) -> Result<Vec<TrackPoint>, QueryError> {
        crate::postgres::tracks::track_page(self, &device, after, to, limit).await
    }

    async fn event_devices(&self, event: Uuid) -> Result<Vec<String>, QueryError> {
        crate::postgres::tracks::event_devices(self, event).await
    }

    async fn public_events(&self) -> Result<Vec<PublicEvent>, QueryError> {
        events::public_events(self).await
    }

    async fn event_details(&self, event: Uuid) -> Result<Option<EventDetails>, QueryError> {
        events::pooled_event_details(self, event).await
    }
}

/// The broadcast group in Redis: blocking reads on a dedicated connection whose response
/// timeout outlasts BLOCK, everything else on the shared control connection.
#[derive(Clone)]
pub struct RedisBroadcast {
    pub client: redis::Client,
    pub control: ConnectionManager,
    pub group: BroadcastGroup,
    pub ttl: Duration,
    pub block: Duration,
}

pub struct RedisBroadcastReader {
    conn: MultiplexedConnection,
    group: BroadcastGroup,
    block: Duration,
}

impl BroadcastPort for RedisBroadcast {
    type Error = StreamError;
    type Reader = RedisBroadcastReader;

    async fn open(&self) -> Result<RedisBroadcastReader, StreamError> {
        self.heartbeat().await?;
        let mut conn = blocking_connection(&self.client, self.block).await?;
        self.group.create(&mut conn).await?;
        Ok(RedisBroadcastReader {
            conn,
            group: self.group.clone(),
            block: self.block,
        })
    }

    async fn heartbeat(&self) -> Result<(), StreamError> {
        let mut control = self.control.clone();
        self.group.heartbeat(&mut control, self.ttl).await
    }

    async fn remove_dead_groups(&self) -> Result<Vec<String>, StreamError> {
        let mut control = self.control.clone();
        self.group.remove_dead_groups(&mut control).await
    }

    async fn destroy(&self) -> Result<(), StreamError> {
        let mut control = self.control.clone();
        self.group.destroy(&mut control).await
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl BroadcastReader for RedisBroadcastReader {
    type Error = StreamError;

    async fn read(&mut self, count: usize) -> Result<Vec<(EntryId, Option<Bytes>)>, StreamError> {
        let entries = self.group.read(&mut self.conn, count, self.block).await?;
        Ok(entries.into_iter().map(|e| (e.id, e.payload)).collect())
    }
}
