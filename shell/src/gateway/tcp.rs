//! The TCP listener: accepts trackers up to the cap, serves each on its own task, and on
//! stop refuses new ones and waits for every connection to finish its packet in flight.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::appender::Appender;
use super::connection::{serve_tracker, Gateway};
use crate::clock::Clock;
use crate::edge::accept::{next_connection, AcceptBackoff};
use crate::edge::slots::ConnectionSlots;
use crate::http::Listener;

pub async fn serve_tcp<L, A, C>(
    mut listener: L,
    slots: ConnectionSlots,
    gateway: Arc<Gateway<A, C>>,
    stop: watch::Receiver<bool>,
) where
    L: Listener,
    A: Appender,
    C: Clock,
{
    let mut backoff = AcceptBackoff::new("GATEWAY_TCP_ADDR", gateway.metrics.accept_errors.clone());
    let mut tasks = JoinSet::new();
    let mut accept_stop = stop.clone();
    while let Some(io) = next_connection(&mut listener, &mut backoff, &mut accept_stop).await {
        while tasks.try_join_next().is_some() {}
        let Some(slot) = slots.take() else {
            // Closed at once, unread and unanswered: the tracker tries again later.
            gateway.metrics.connections_rejected.inc();
            drop(io);
            continue;
        };
        gateway.metrics.connections_accepted.inc();
        gateway.metrics.connections.inc();
        let peer = L::peer(&io).map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let gateway = gateway.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            serve_tracker(io, peer, gateway.clone(), stop).await;
            gateway.metrics.connections.dec();
            drop(slot);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    while tasks.join_next().await.is_some() {}
}
