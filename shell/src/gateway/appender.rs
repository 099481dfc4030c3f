//! Where a packet's entries go: the telemetry stream, one pipelined XADD per record.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

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
        entries: &PacketEntries,
    ) -> impl Future<Output = Result<(), AppendError>> + Send;
}

/// The telemetry stream on Redis, over one multiplexed connection that every tracker
/// connection shares: concurrent packets' pipelines go out back to back on one socket.
#[derive(Clone)]
pub struct RedisAppender {
    pub stream: String,
    /// `None` until the first connection succeeds; the connection manager reconnects by
    /// itself after that.
    pub connection: watch::Receiver<Option<ConnectionManager>>,
}

impl Appender for RedisAppender {
    async fn append(&self, entries: &PacketEntries) -> Result<(), AppendError> {
        let Some(mut conn) = self.connection.borrow().clone() else {
            return Err(AppendError("Redis is not connected yet".into()));
        };
        let mut pipe = redis::pipe();
        for payload in &entries.payloads {
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("payload")
                .arg(payload)
                .arg("source")
                .arg(entries.source)
                .arg("received_at")
                .arg(&entries.received_at);
        }
        // Parsing every reply as an id makes an error reply to any XADD an error here.
        let ids: Vec<String> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| AppendError(e.to_string()))?;
        if ids.len() == entries.len() {
            Ok(())
        } else {
            Err(AppendError(format!(
                "{} of {} entries confirmed",
                ids.len(),
                entries.len()
            )))
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(500);
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
    let mut conn = loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(conn) => break conn,
            Err(error) => {
                tracing::warn!(%error, "cannot connect to Redis; retrying");
                metrics.set_redis(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
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
