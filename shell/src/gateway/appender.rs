//! Where a packet's entries go: the telemetry stream, one XADD per record, packets that
//! queue together sent as one pipeline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use processor_core::backoff::RECONNECT;
use processor_core::teltonika::PacketEntries;

use super::metrics::GatewayMetrics;

/// The append did not happen, or Redis did not confirm it: the packet is not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AppendError(pub String);

/// Appends a packet's entries to the stream; `Ok` only when every one is confirmed.
pub trait Appender: Clone + Send + Sync + 'static {
    fn append(
        &self,
        entries: PacketEntries,
    ) -> impl Future<Output = Result<(), AppendError>> + Send;
}

/// A packet waiting for its pipeline, and where to say how it went.
pub struct Queued {
    entries: PacketEntries,
    done: oneshot::Sender<Result<(), AppendError>>,
}

/// The telemetry stream on Redis. Packets from every tracker connection queue up for
/// [`run_pipelines`], which sends whatever has queued as one pipeline: under load a
/// pipeline carries many packets (group commit), so the cost per record approaches a plain
/// pipelined client's instead of paying a request, a write and a wake-up per packet.
#[derive(Clone)]
pub struct RedisAppender {
    queue: mpsc::Sender<Queued>,
}

impl RedisAppender {
    /// The appender, and the queue [`run_pipelines`] takes packets from.
    pub fn new() -> (RedisAppender, mpsc::Receiver<Queued>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        (RedisAppender { queue }, receiver)
    }
}

impl Appender for RedisAppender {
    async fn append(&self, entries: PacketEntries) -> Result<(), AppendError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Queued { entries, done })
            .await
            .map_err(|_| AppendError("the gateway is stopping".into()))?;
        outcome
            .await
            .unwrap_or_else(|_| Err(AppendError("the pipeline was abandoned".into())))
    }
}

/// Packets that may wait for a pipeline; a sender past this waits (every tracker connection
/// has at most one packet appending, and UDP a bounded number).
const QUEUE: usize = 16_384;
/// Records in one pipeline at most.
const MAX_PIPELINE_RECORDS: usize = 2_000;
/// Pipelines in flight at once. With trackers waiting for their ACK, few pipelines make
/// the gateway, Redis and the trackers take turns in lockstep (each idle half the time);
/// measured here with 200 flooding trackers: 2 in flight about 55k records/s, 8 about 120k
/// (docs/BENCHMARKS.md).
const MAX_PIPELINES: usize = 8;

/// Where a pipeline goes: XADDs every entry of every packet, `Ok` only when Redis confirmed
/// them all. Redis in the service, the simulated Redis host in the simulation.
pub trait Pipeline: Send + Sync + 'static {
    fn xadd_all(
        &self,
        packets: &[PacketEntries],
    ) -> impl Future<Output = Result<(), AppendError>> + Send;
}

/// Sends queued packets through `pipeline` until every [`RedisAppender`] is gone, then
/// finishes the pipelines in flight.
pub async fn run_pipelines<P: Pipeline>(pipeline: P, mut queue: mpsc::Receiver<Queued>) {
    let pipeline = Arc::new(pipeline);
    let mut running = JoinSet::new();
    loop {
        while running.len() >= MAX_PIPELINES {
            let _ = running.join_next().await;
        }
        let first = tokio::select! {
            biased;
            Some(_) = running.join_next(), if !running.is_empty() => continue,
            queued = queue.recv() => match queued {
                Some(q) => q,
                None => break,
            },
        };
        let mut records = first.entries.len();
        let mut batch = vec![first];
        while records < MAX_PIPELINE_RECORDS {
            match queue.try_recv() {
                Ok(q) => {
                    records += q.entries.len();
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let pipeline = pipeline.clone();
        running.spawn(async move {
            let (packets, answers): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|q| (q.entries, q.done)).unzip();
            let outcome = pipeline.xadd_all(&packets).await;
            for done in answers {
                // The connection may have given up on its packet (closed, timed out):
                // nobody to tell.
                let _ = done.send(outcome.clone());
            }
        });
    }
    while running.join_next().await.is_some() {}
}

/// The telemetry stream on Redis, over one multiplexed connection.
pub struct RedisPipeline {
    pub stream: String,
    /// `None` until the first connection succeeds; the connection manager reconnects by
    /// itself after that.
    pub connection: watch::Receiver<Option<ConnectionManager>>,
}

impl Pipeline for RedisPipeline {
    async fn xadd_all(&self, packets: &[PacketEntries]) -> Result<(), AppendError> {
        let Some(mut conn) = self.connection.borrow().clone() else {
            return Err(AppendError("Redis is not connected yet".into()));
        };
        let mut pipe = redis::pipe();
        let mut records = 0;
        for e in packets {
            records += e.len();
            for payload in &e.payloads {
                pipe.cmd("XADD")
                    .arg(&self.stream)
                    .arg("*")
                    .arg("payload")
                    .arg(payload)
                    .arg("source")
                    .arg(e.source)
                    .arg("received_at")
                    .arg(&e.received_at);
            }
        }
        // Parsing every reply as an id makes an error reply to any XADD an error here.
        match pipe.query_async::<Vec<String>>(&mut conn).await {
            Ok(ids) if ids.len() == records => Ok(()),
            Ok(ids) => Err(AppendError(format!(
                "{} of {records} entries confirmed",
                ids.len()
            ))),
            Err(e) => Err(AppendError(e.to_string())),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(1);

/// Connects to Redis (retrying until it answers, so that the listeners serve meanwhile),
/// publishes the connection, then pings it every second for `/readyz`, until `stop`.
pub async fn keep_connected(
    client: redis::Client,
    ack_timeout: Duration,
    publish: watch::Sender<Option<ConnectionManager>>,
    metrics: std::sync::Arc<GatewayMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // A pipeline's replies may take up to the acknowledgement deadline; redis-rs's own
        // default (500 ms) would fail packets that the deadline still allows.
        .set_response_timeout(Some(ack_timeout))
        .set_number_of_retries(1);
    let mut backoff = RECONNECT;
    let mut conn = loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(conn) => break conn,
            Err(error) => {
                tracing::warn!(%error, "cannot connect to Redis; retrying");
                metrics.set_redis(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(backoff.failed())) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    };
    tracing::info!("connected to Redis");
    publish.send_replace(Some(conn.clone()));
    loop {
        let up = redis::cmd("PING")
            .query_async::<redis::Value>(&mut conn)
            .await
            .is_ok();
        metrics.set_redis(up);
        tokio::select! {
            _ = tokio::time::sleep(PING_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
