//! One processor instance, started and stopped as a whole: the composition root the binary
//! and the simulation both run, each with its own ports.
//!
//! [`run`] starts the live path (WebSocket server, hub shards, broadcast consumer, device map
//! refresh), the durable loop and the side tasks the caller adds (health checks, the stream
//! trimmer), then waits for `stop`. It stops them one stage at a time, in the contract's
//! order (docs/operations.md, "Shutdown"): the live path first (no new clients, every client
//! closed with 1001, then the map refresh and the broadcast consumer, which removes its own
//! group); then the durable loop, which commits and acks what it holds; then this
//! consumer leaves the durable group unless it still holds pending entries; the side tasks
//! last. A stage starts only once the one before has ended, so no client is still being
//! served while the durable consumer settles, and the group is left only once nothing more
//! can be read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use processor_core::durable::DurableConfig;
use processor_core::live::LiveConfig;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::durable::ports::{ConsumerRemoval, StorePort, StreamPort};
use crate::durable::{self, DurableContext};
use crate::edge::http::HttpLimits;
use crate::http::Listener;
use crate::live::ports::{BroadcastPort, LiveStore};
use crate::live::{self, IngestPlacement, LivePlan};
use crate::map_page::MapPage;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// What an instance runs against: the service's Redis, Postgres and TCP listener, or the
/// simulation's servers reached over simulated TCP.
pub struct InstancePorts<DS, DP, LS, L, B, C> {
    pub durable_stream: DS,
    pub durable_store: DP,
    pub live_store: LS,
    pub listener: L,
    pub broadcast: B,
    pub clock: C,
}

/// How an instance is set up: the core's configurations and the executors' limits.
pub struct InstanceSettings {
    pub live: LiveConfig,
    pub durable: DurableConfig,
    /// Hub shards (at least 1).
    pub shards: usize,
    pub map_refresh: Duration,
    pub ingest: IngestPlacement,
    pub limits: HttpLimits,
    /// WebSockets open at once, at most.
    pub max_connections: usize,
    pub map_page: MapPage,
    pub auth: Authenticator,
    /// On shutdown, how long the durable loop waits for what it holds to be stored.
    pub grace: Duration,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

/// A task beside the instance's own (health checks, the trimmer): started with a stop signal
/// that turns true after the durable consumer has left, and awaited last.
pub type SideTask = Box<dyn FnOnce(watch::Receiver<bool>) -> BoxedTask + Send>;
pub type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The stages of a stop, as [`run`] went through them; each is reported as it ends, so that
/// a caller (the simulation) can check their order against what the outside world saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Every client closed, map refresh and broadcast consumer stopped.
    LiveStopped,
    /// The durable loop settled what it held (or its grace time ran out).
    DurableStopped,
    /// This consumer's leaving of the durable group, as it came out (`None`: the removal
    /// failed; the consumer stays, harmless but listed).
    LeftGroup(Option<ConsumerRemoval>),
    /// The side tasks ended.
    Stopped,
}

/// Runs an instance until `stop` turns true, then stops it stage by stage; `on_stage` hears
/// each stage as it ends.
pub async fn run<DS, DP, LS, L, B, C>(
    ports: InstancePorts<DS, DP, LS, L, B, C>,
    settings: InstanceSettings,
    side_tasks: Vec<SideTask>,
    mut stop: watch::Receiver<bool>,
    mut on_stage: impl FnMut(Stage),
) where
    DS: StreamPort,
    DP: StorePort,
    LS: LiveStore,
    L: Listener,
    B: BroadcastPort,
    C: Clock,
{
    let (live_stop_tx, live_stop) = watch::channel(false);
    let (durable_stop_tx, durable_stop) = watch::channel(false);
    let (side_stop_tx, side_stop) = watch::channel(false);
    let live_path = live::start(
        LivePlan {
            config: settings.live,
            shards: settings.shards,
            store: ports.live_store,
            clock: ports.clock.clone(),
            metrics: settings.metrics.clone(),
            readiness: settings.readiness.clone(),
            auth: settings.auth,
            listener: ports.listener,
            broadcast: ports.broadcast,
            map_refresh: settings.map_refresh,
            ingest: settings.ingest,
            limits: settings.limits,
            max_connections: settings.max_connections,
            map_page: settings.map_page,
        },
        live_stop,
    );
    let stream = ports.durable_stream;
    let durable = tokio::spawn(durable::run(
        DurableContext {
            stream: stream.clone(),
            store: ports.durable_store,
            clock: ports.clock,
            metrics: settings.metrics,
            readiness: settings.readiness,
            config: settings.durable,
            grace: settings.grace,
        },
        durable_stop,
    ));
    let side: Vec<_> = side_tasks
        .into_iter()
        .map(|task| tokio::spawn(task(side_stop.clone())))
        .collect();

    let _ = stop.wait_for(|s| *s).await;
    let _ = live_stop_tx.send(true);
    live_path.join().await;
    on_stage(Stage::LiveStopped);
    let _ = durable_stop_tx.send(true);
    let _ = durable.await;
    on_stage(Stage::DurableStopped);
    // Without this, every restart under a new INSTANCE_ID (the default has the pid) would
    // leave one more consumer in the group.
    on_stage(Stage::LeftGroup(leave_group(&stream).await));
    let _ = side_stop_tx.send(true);
    for task in side {
        let _ = task.await;
    }
    on_stage(Stage::Stopped);
}

async fn leave_group<S: StreamPort>(stream: &S) -> Option<ConsumerRemoval> {
    let removal = stream.leave().await;
    match &removal {
        Ok(ConsumerRemoval::Removed) => tracing::info!("durable consumer removed from the group"),
        Ok(ConsumerRemoval::KeptWithPending) => tracing::warn!(
            "durable consumer kept in the group: it holds pending entries, which another \
             instance claims after DURABLE_CLAIM_IDLE_MS"
        ),
        Err(error) => {
            tracing::warn!(%error, "cannot remove the durable consumer from the group")
        }
    }
    removal.ok()
}
