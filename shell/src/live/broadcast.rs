//! The broadcast consumer: reads every record for this instance's clients, has the core's
//! ingest judge it once, and hands the resulting batch to every shard.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use processor_core::backoff::LIVE_RECONNECT;
use processor_core::live::{
    DeviceMap, Ingest, IngestInput, IngestStats, Input, LiveConfig, TrackInput, TrackStore,
};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

use super::input::Shards;
use super::ports::{BroadcastPort, BroadcastReader};

/// Entries per read. The stream's BLOCK time is the port's (`RedisBroadcast::block`).
const BATCH: usize = 1_000;

pub struct BroadcastContext<B: BroadcastPort, C: Clock> {
    pub port: B,
    pub config: LiveConfig,
    pub clock: C,
    pub shards: Shards,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Every non-faulty position read goes in, for the shards' snapshots.
    pub tracks: Arc<Mutex<TrackStore>>,
}

/// Starts once the first device-to-event map is in (`map`), so that no position is read
/// before it can be routed. Reads until `stop`, checked between reads (a read in flight is
/// never cancelled). Keeps the heartbeat fresh, removes dead instances' groups, and
/// destroys its own group on the way out.
pub async fn run<B: BroadcastPort, C: Clock>(
    ctx: BroadcastContext<B, C>,
    mut map: watch::Receiver<Option<Arc<DeviceMap>>>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        biased;
        loaded = map.wait_for(Option::is_some) => {
            if loaded.is_err() {
                return;
            }
        }
        _ = stop.wait_for(|s| *s) => return,
    }
    let BroadcastContext {
        port,
        config,
        clock,
        shards,
        metrics,
        readiness,
        tracks,
    } = ctx;
    let mut ingest = Ingest::new(&config);
    // `wait_for` marked the first map seen: take it here, later ones as they change.
    if let Some(first) = map.borrow_and_update().clone() {
        let points = track(&tracks, clock.now(), TrackInput::DeviceMap(&first));
        metrics.live_track_points.set(points as i64);
        ingest.handle(clock.now(), IngestInput::DeviceMap(first));
    }
    let mut counted = IngestStats::default();
    let heartbeat = tokio::spawn(keep_alive(port.clone(), stop.clone()));
    let mut reader = None;
    let mut backoff = LIVE_RECONNECT;
    while !*stop.borrow() {
        if map.has_changed().unwrap_or(false) {
            if let Some(m) = map.borrow_and_update().clone() {
                let points = track(&tracks, clock.now(), TrackInput::DeviceMap(&m));
                metrics.live_track_points.set(points as i64);
                ingest.handle(clock.now(), IngestInput::DeviceMap(m));
            }
        }
        let r = match reader.as_mut() {
            Some(r) => r,
            None => match port.open().await {
                Ok(r) => {
                    let points = track(&tracks, clock.now(), TrackInput::Reading);
                    metrics.live_track_points.set(points as i64);
                    reader.insert(r)
                }
                Err(error) => {
                    tracing::warn!(%error, "broadcast consumer cannot start yet");
                    readiness.set_broadcast_consumer(false);
                    tokio::time::sleep(Duration::from_millis(backoff.failed())).await;
                    continue;
                }
            },
        };
        readiness.set_broadcast_consumer(true);
        let read = r.read(BATCH).await;
        if read.is_ok() {
            backoff.succeeded();
        }
        match read {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                let now = clock.now();
                ingest.handle(now, IngestInput::Entries(entries));
                while let Some(batch) = ingest.poll_batch() {
                    let points = track(&tracks, now, TrackInput::Batch(&batch));
                    metrics.live_track_points.set(points as i64);
                    if !shards.broadcast(|| Input::Batch(batch.clone())) {
                        break;
                    }
                }
                let stats = ingest.stats();
                record(&metrics, &counted, &stats);
                counted = stats;
            }
            Err(error) => {
                tracing::warn!(%error, "broadcast read failed; reconnecting");
                readiness.set_broadcast_consumer(false);
                reader = None;
                tokio::time::sleep(Duration::from_millis(backoff.failed())).await;
            }
        }
    }
    readiness.set_broadcast_consumer(false);
    let _ = heartbeat.await;
    if let Err(error) = port.destroy().await {
        tracing::warn!(%error, "could not remove this instance's broadcast group");
    }
}

/// Feeds the track store; returns the fixes it holds.
fn track(
    store: &Mutex<TrackStore>,
    now: processor_core::UnixMillis,
    input: TrackInput<'_>,
) -> usize {
    let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
    store.handle(now, input);
    store.len()
}

fn record(metrics: &Metrics, before: &IngestStats, now: &IngestStats) {
    metrics
        .live_broadcast_records
        .inc_by(now.broadcast_records - before.broadcast_records);
    metrics
        .live_broadcast_decode_errors
        .inc_by(now.decode_errors - before.decode_errors);
    metrics
        .live_broadcast_orphan_records
        .inc_by(now.orphan_records - before.orphan_records);
}

async fn keep_alive<B: BroadcastPort>(port: B, mut stop: watch::Receiver<bool>) {
    let every = (port.ttl() / 3).max(Duration::from_millis(100));
    loop {
        if let Err(error) = port.heartbeat().await {
            tracing::warn!(%error, "broadcast heartbeat failed");
        }
        match port.remove_dead_groups().await {
            Ok(removed) => {
                for name in removed {
                    tracing::info!(group = %name, "removed the broadcast group of a dead instance");
                }
            }
            Err(error) => tracing::warn!(%error, "looking for dead broadcast groups failed"),
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
