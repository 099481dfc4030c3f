//! The broadcast consumer: reads every record for this instance's clients.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::readiness::Readiness;

use super::ports::{BroadcastPort, BroadcastReader};
use super::HubInput;

/// Entries per read. The stream's BLOCK time is the port's (`RedisBroadcast::block`).
const BATCH: usize = 1_000;
const RETRY: Duration = Duration::from_millis(500);

/// Starts once the hub has its first device-to-event map (`map_loaded`), so that no
/// position reaches it before it can be routed. Reads until `stop`, checked between reads
/// (a read in flight is never cancelled). Keeps the heartbeat fresh, removes dead
/// instances' groups, and destroys its own group on the way out.
pub async fn run<B: BroadcastPort>(
    port: B,
    hub: mpsc::UnboundedSender<HubInput>,
    readiness: Arc<Readiness>,
    mut map_loaded: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        biased;
        loaded = map_loaded.wait_for(|l| *l) => {
            if loaded.is_err() {
                return;
            }
        }
        _ = stop.wait_for(|s| *s) => return,
    }
    let heartbeat = tokio::spawn(keep_alive(port.clone(), stop.clone()));
    let mut reader = None;
    while !*stop.borrow() {
        let r = match reader.as_mut() {
            Some(r) => r,
            None => match port.open().await {
                Ok(r) => reader.insert(r),
                Err(error) => {
                    tracing::warn!(%error, "broadcast consumer cannot start yet");
                    readiness.set_broadcast_consumer(false);
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        readiness.set_broadcast_consumer(true);
        match r.read(BATCH).await {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                if hub.send(HubInput::Positions(batch)).is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "broadcast read failed; reconnecting");
                readiness.set_broadcast_consumer(false);
                reader = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    readiness.set_broadcast_consumer(false);
    let _ = heartbeat.await;
    if let Err(error) = port.destroy().await {
        tracing::warn!(%error, "could not remove this instance's broadcast group");
    }
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
