//! Periodic reachability checks behind `/readyz`, and the pending-entries gauge.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::postgres::PositionStore;
use crate::readiness::Readiness;
use crate::redis_stream::DurableStream;

const INTERVAL: Duration = Duration::from_secs(1);

/// Checks Redis and Postgres every second until `stop` turns true.
pub async fn run(
    mut control: ConnectionManager,
    stream: DurableStream,
    store: PositionStore,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let redis_up = redis::cmd("PING")
            .query_async::<Value>(&mut control)
            .await
            .is_ok();
        readiness.set_redis(redis_up);
        if redis_up {
            if let Ok(pending) = stream.pending_total(&mut control).await {
                metrics
                    .durable_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
        readiness.set_postgres(store.ping().await);
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
