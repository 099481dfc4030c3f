//! The broadcast consumer: reads every record for this instance's clients.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, watch};

use crate::readiness::Readiness;
use crate::redis_stream::blocking_connection;
use crate::redis_stream::broadcast::BroadcastGroup;

use super::HubInput;

const BLOCK: Duration = Duration::from_millis(1_000);
const BATCH: usize = 1_000;
const RETRY: Duration = Duration::from_millis(500);

/// Reads until `stop`, checked between reads (a read in flight is never cancelled). Keeps
/// the heartbeat fresh, removes dead instances' groups, and destroys its own group on the
/// way out.
pub async fn run(
    redis: redis::Client,
    mut control: ConnectionManager,
    group: BroadcastGroup,
    ttl: Duration,
    hub: mpsc::UnboundedSender<HubInput>,
    readiness: Arc<Readiness>,
    stop: watch::Receiver<bool>,
) {
    let heartbeat = tokio::spawn(keep_alive(
        control.clone(),
        group.clone(),
        ttl,
        stop.clone(),
    ));
    let mut conn = None;
    while !*stop.borrow() {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&redis, &mut control, &group, ttl).await {
                Ok(c) => conn.insert(c),
                Err(error) => {
                    tracing::warn!(%error, "broadcast consumer cannot start yet");
                    readiness.set_broadcast_consumer(false);
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        readiness.set_broadcast_consumer(true);
        match group.read(c, BATCH, BLOCK).await {
            Ok(entries) if entries.is_empty() => {}
            Ok(entries) => {
                let batch = entries.into_iter().map(|e| (e.id, e.payload)).collect();
                if hub.send(HubInput::Positions(batch)).is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "broadcast read failed; reconnecting");
                readiness.set_broadcast_consumer(false);
                conn = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
    readiness.set_broadcast_consumer(false);
    let _ = heartbeat.await;
    if let Err(error) = group.destroy(&mut control).await {
        tracing::warn!(%error, "could not remove this instance's broadcast group");
    }
}

async fn connect(
    redis: &redis::Client,
    control: &mut ConnectionManager,
    group: &BroadcastGroup,
    ttl: Duration,
) -> Result<redis::aio::MultiplexedConnection, crate::redis_stream::StreamError> {
    // Heartbeat first: another instance must never take a new group for a dead one.
    group.heartbeat(control, ttl).await?;
    let mut conn = blocking_connection(redis, BLOCK).await?;
    group.create(&mut conn).await?;
    Ok(conn)
}

async fn keep_alive(
    mut control: ConnectionManager,
    group: BroadcastGroup,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        if let Err(error) = group.heartbeat(&mut control, ttl).await {
            tracing::warn!(%error, "broadcast heartbeat failed");
        }
        match group.remove_dead_groups(&mut control).await {
            Ok(removed) => {
                for name in removed {
                    tracing::info!(group = %name, "removed the broadcast group of a dead instance");
                }
            }
            Err(error) => tracing::warn!(%error, "looking for dead broadcast groups failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
