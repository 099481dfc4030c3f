//! The optional stream trimmer (`STREAM_TRIM_INTERVAL_MS`): every interval, asks where the
//! consumer groups stand, lets the core decide how far the stream may go, and trims that far.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;

use processor_core::trim::trim_floor;

use crate::metrics::Metrics;
use crate::redis_stream::trim::{group_positions, trim_below};

/// Trims `stream` every `interval` until `stop` turns true.
pub async fn run(
    mut control: ConnectionManager,
    stream: String,
    durable_group: String,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let positions = match group_positions(&mut control, &stream).await {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(%error, "stream trim: cannot read the consumer groups; will retry");
                continue;
            }
        };
        if let Some(floor) = trim_floor(&positions, &durable_group) {
            match trim_below(&mut control, &stream, floor).await {
                Ok(removed) => {
                    tracing::debug!(%floor, removed, "stream trimmed");
                    metrics.stream_trimmed_entries.inc_by(removed);
                }
                Err(error) => tracing::warn!(%error, "stream trim failed; will retry"),
            }
        }
        metrics.stream_trim_passes.inc();
    }
}
