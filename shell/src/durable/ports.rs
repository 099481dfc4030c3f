//! What the durable loop runs against: the stream, the positions store and the clock
//! ([`Clock`](crate::clock::Clock), shared with the live path).
//!
//! The service plugs in Redis ([`RedisStream`]), Postgres ([`PositionStore`]) and the wall
//! clock ([`SystemClock`](crate::clock::SystemClock)); the simulation plugs in in-memory
//! servers reached over a simulated network, and simulated time. The loop itself is the
//! same code either way.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};

use crate::postgres::PositionStore;
pub use crate::redis_stream::group::ConsumerRemoval;
use crate::redis_stream::{blocking_connection, DurableStream, StreamError};
use processor_core::durable::{ClaimResult, DeadLetter, ReadFrom, WriteFailure, WriteRow};
use processor_core::stream::{EntryId, StreamEntry};

/// The durable consumer group's commands.
pub trait StreamPort: Clone + Send + Sync + 'static {
    type Error: std::fmt::Display + Send + 'static;
    type Reader: BlockingReader<Error = Self::Error>;

    /// The connection blocking reads go through: one task, one read at a time, never
    /// cancelled.
    fn reader(&self) -> Self::Reader;

    /// One page of `XAUTOCLAIM`, with delivery counts.
    fn claim(
        &self,
        cursor: EntryId,
        min_idle_ms: u64,
        count: usize,
    ) -> impl Future<Output = Result<ClaimResult, Self::Error>> + Send;

    fn ack(&self, ids: &[EntryId]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Copies the entries to the dead-letter stream (the acks follow as their own command).
    fn dead_letter(
        &self,
        entries: &[DeadLetter],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Removes this consumer from the group, unless it holds pending entries (those stay
    /// for another instance to claim).
    fn leave(&self) -> impl Future<Output = Result<ConsumerRemoval, Self::Error>> + Send;
}

/// Blocking reads of the durable group.
pub trait BlockingReader: Send + 'static {
    type Error: std::fmt::Display + Send + 'static;

    fn read(
        &mut self,
        from: ReadFrom,
        count: usize,
    ) -> impl Future<Output = Result<Vec<StreamEntry>, Self::Error>> + Send;
}

/// Where positions are stored.
pub trait StorePort: Clone + Send + Sync + 'static {
    /// Stores `rows`; `Ok(n)` once committed, n being the rows not stored before.
    fn write(&self, rows: &[WriteRow]) -> impl Future<Output = Result<u64, WriteFailure>> + Send;
}

/// The durable group in Redis: blocking reads on a dedicated connection, everything else on
/// the shared control connection.
#[derive(Clone)]
pub struct RedisStream {
    pub client: redis::Client,
    pub control: ConnectionManager,
    pub stream: DurableStream,
    pub block: Duration,
}

impl StreamPort for RedisStream {
    type Error = StreamError;
    type Reader = RedisReader;

    fn reader(&self) -> RedisReader {
        RedisReader {
            client: self.client.clone(),
            stream: self.stream.clone(),
            block: self.block,
            conn: None,
        }
    }

    async fn claim(
        &self,
        cursor: EntryId,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<ClaimResult, StreamError> {
        let mut conn = self.control.clone();
        self.stream
            .claim(&mut conn, cursor, min_idle_ms, count)
            .await
    }

    async fn ack(&self, ids: &[EntryId]) -> Result<(), StreamError> {
        let mut conn = self.control.clone();
        self.stream.ack(&mut conn, ids).await
    }

    async fn dead_letter(&self, entries: &[DeadLetter]) -> Result<(), StreamError> {
        let mut conn = self.control.clone();
        self.stream.dead_letter(&mut conn, entries).await
    }

    async fn leave(&self) -> Result<ConsumerRemoval, StreamError> {
        let mut conn = self.control.clone();
        self.stream.remove_consumer_unless_pending(&mut conn).await
    }
}

/// The connection of blocking reads. A read dropped half-way could be delivered by the
/// server after the client stopped listening, leaving its entries pending with nobody
/// storing them until they are claimed: reads are never cancelled, and a failed one gets a
/// fresh connection next time (its group checked on connect).
pub struct RedisReader {
    client: redis::Client,
    stream: DurableStream,
    block: Duration,
    conn: Option<MultiplexedConnection>,
}

impl BlockingReader for RedisReader {
    type Error = StreamError;

    async fn read(
        &mut self,
        from: ReadFrom,
        count: usize,
    ) -> Result<Vec<StreamEntry>, StreamError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let mut fresh = blocking_connection(&self.client, self.block).await?;
                self.stream.ensure_group(&mut fresh).await?;
                self.conn.insert(fresh)
            }
        };
        let result = self.stream.read(conn, from, count, self.block).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

impl StorePort for PositionStore {
    async fn write(&self, rows: &[WriteRow]) -> Result<u64, WriteFailure> {
        PositionStore::write(self, rows).await
    }
}
