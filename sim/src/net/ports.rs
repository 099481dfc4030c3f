//! The processor's side of the network layer: the shell's durable ports, implemented by
//! requests to the server hosts over simulated TCP, and a clock that reads simulated time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

use processor_core::durable::{ClaimResult, DeadLetter, ReadFrom, WriteFailure, WriteRow};
use processor_core::stream::{EntryId, StreamEntry};
use processor_core::UnixMillis;
use processor_shell::clock::Clock;
use processor_shell::durable::ports::{BlockingReader, ConsumerRemoval, StorePort, StreamPort};

use super::servers::{Request, Response, Servers, POSTGRES_PORT, REDIS_PORT};

/// How long a client waits for an answer beyond the server's own blocking time.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(2);

/// One request over a fresh connection: connect, send the id, wait for it to come back.
pub(super) async fn call(
    servers: &Servers,
    host: &str,
    port: u16,
    request: Request,
    extra_wait: Duration,
) -> Result<Response, String> {
    let id = servers.file(request);
    let exchange = async {
        let mut socket = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect to {host}: {e}"))?;
        socket
            .write_u64(id)
            .await
            .map_err(|e| format!("send to {host}: {e}"))?;
        let back = socket
            .read_u64()
            .await
            .map_err(|e| format!("no answer from {host}: {e}"))?;
        if back == id {
            Ok(())
        } else {
            Err(format!("{host} answered request {back}, not {id}"))
        }
    };
    let outcome = match tokio::time::timeout(ROUND_TRIP_TIMEOUT + extra_wait, exchange).await {
        Ok(Ok(())) => servers
            .take_response(id)
            .ok_or_else(|| format!("{host} filed no answer")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("{host} timed out")),
    };
    servers.forget(id);
    outcome
}

/// The durable group on the "redis" host.
#[derive(Clone)]
pub struct NetStream {
    pub servers: Servers,
    pub consumer: String,
    pub block_ms: u64,
    /// A planted defect: every entry read is acked at once (before it is stored), the way a
    /// consumer reading with NOACK would lose it on a crash.
    pub ack_on_read: bool,
}

pub struct NetReader(NetStream);

impl StreamPort for NetStream {
    type Error = String;
    type Reader = NetReader;

    fn reader(&self) -> NetReader {
        NetReader(self.clone())
    }

    async fn claim(
        &self,
        cursor: EntryId,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<ClaimResult, String> {
        let request = Request::Claim {
            consumer: self.consumer.clone(),
            cursor,
            min_idle_ms,
            count,
        };
        match call(&self.servers, "redis", REDIS_PORT, request, Duration::ZERO).await? {
            Response::Claim(result) => Ok(result),
            other => Err(format!("unexpected answer to a claim: {other:?}")),
        }
    }

    async fn ack(&self, ids: &[EntryId]) -> Result<(), String> {
        let request = Request::Ack(ids.to_vec());
        call(&self.servers, "redis", REDIS_PORT, request, Duration::ZERO)
            .await
            .map(|_| ())
    }

    async fn dead_letter(&self, entries: &[DeadLetter]) -> Result<(), String> {
        let request = Request::DeadLetter(entries.to_vec());
        call(&self.servers, "redis", REDIS_PORT, request, Duration::ZERO)
            .await
            .map(|_| ())
    }

    async fn leave(&self) -> Result<ConsumerRemoval, String> {
        let request = Request::Leave {
            consumer: self.consumer.clone(),
        };
        match call(&self.servers, "redis", REDIS_PORT, request, Duration::ZERO).await? {
            Response::Left(true) => Ok(ConsumerRemoval::Removed),
            Response::Left(false) => Ok(ConsumerRemoval::KeptWithPending),
            other => Err(format!("unexpected answer to a leave: {other:?}")),
        }
    }
}

impl BlockingReader for NetReader {
    type Error = String;

    async fn read(&mut self, from: ReadFrom, count: usize) -> Result<Vec<StreamEntry>, String> {
        let s = &self.0;
        let request = Request::Read {
            consumer: s.consumer.clone(),
            from,
            count,
            block_ms: s.block_ms,
        };
        let wait = Duration::from_millis(s.block_ms);
        match call(&s.servers, "redis", REDIS_PORT, request, wait).await? {
            Response::Read(entries) => {
                if s.ack_on_read && !entries.is_empty() {
                    let ids: Vec<EntryId> = entries.iter().map(|e| e.id).collect();
                    s.ack(&ids).await?;
                }
                Ok(entries)
            }
            other => Err(format!("unexpected answer to a read: {other:?}")),
        }
    }
}

/// The positions table on the "postgres" host.
#[derive(Clone)]
pub struct NetStore {
    pub servers: Servers,
}

impl StorePort for NetStore {
    async fn write(&self, rows: &[WriteRow]) -> Result<u64, WriteFailure> {
        let request = Request::Write(rows.to_vec());
        match call(
            &self.servers,
            "postgres",
            POSTGRES_PORT,
            request,
            Duration::ZERO,
        )
        .await
        {
            Ok(Response::Written(n)) => Ok(n),
            Ok(other) => Err(WriteFailure::Transient(format!(
                "unexpected answer to a write: {other:?}"
            ))),
            // Whether the transaction committed is unknown: the core retries the same rows,
            // which the store skips if they made it.
            Err(e) => Err(WriteFailure::Transient(e)),
        }
    }
}

/// Simulated time, shifted by `skew_ms` (a processor whose clock is off).
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    pub skew_ms: i64,
}

impl Clock for SimClock {
    fn now(&self) -> UnixMillis {
        let ms = turmoil::since_epoch().map_or(0, |d| d.as_millis() as i64);
        UnixMillis(ms + self.skew_ms)
    }
}
