//! The live path of one instance, started and stopped as a whole: the same code in the
//! service and in the simulation.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use processor_core::live::replay_budget::ReplayBudget;
use processor_core::live::{LiveConfig, TrackStore};

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::edge::http::HttpLimits;
use crate::edge::slots::ConnectionSlots;
use crate::http::{self, Listener, WsContext};
use crate::map_page::MapPage;
use crate::metrics::Metrics;
use crate::readiness::Readiness;

use super::broadcast::{self, BroadcastContext};
use super::input::Shards;
use super::ports::{BroadcastPort, LiveStore};
use super::shard::{self, ShardContext};

pub struct LivePlan<S: LiveStore, C: Clock, L: Listener, B: BroadcastPort> {
    pub config: LiveConfig,
    /// Hub shards (at least 1).
    pub shards: usize,
    pub store: S,
    pub clock: C,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub auth: Authenticator,
    pub listener: L,
    pub broadcast: B,
    pub map_refresh: Duration,
    pub ingest: IngestPlacement,
    pub limits: HttpLimits,
    /// WebSockets open at once, at most.
    pub max_connections: usize,
    /// The map page served at `/`.
    pub map_page: MapPage,
}

/// Where the broadcast consumer (stream reads and the ingest) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestPlacement {
    /// On an OS thread of its own, with its own runtime: its reads are then answered while
    /// the shards write, instead of waiting for a shard's turn to end on a shared worker
    /// (on one core that wait made every read bring 10 ms of positions, and every turn
    /// write to every client: docs/BENCHMARKS.md).
    OwnThread,
    /// A task on the caller's runtime (the simulation, where everything is one thread).
    Task,
}

pub struct LiveTasks {
    server: JoinHandle<()>,
    shards: Vec<JoinHandle<()>>,
    device_map: JoinHandle<()>,
    broadcast: JoinHandle<()>,
}

/// Connections snapshots with history (a trail or a resume) read Postgres over at once,
/// over all shards: a resume takes one, a trail [`TRAIL_CONNECTIONS`]. One such load can
/// read hundreds of thousands of rows; more wait their turn (their subscriptions hold what
/// arrives meanwhile), so that subscribers cannot take the pool the durable path writes
/// through, nor turn their message rate into Postgres load.
///
/// [`TRAIL_CONNECTIONS`]: crate::postgres::history::TRAIL_CONNECTIONS
pub const HISTORY_LOADS: usize = 2;
// A trail takes up to TRAIL_CONNECTIONS permits at once: fewer permits would never serve it.
const _: () = assert!(HISTORY_LOADS >= crate::postgres::history::TRAIL_CONNECTIONS);

/// Starts the WebSocket server, the shards, the device map refresh and the broadcast
/// consumer; they run until `stop` turns true.
pub fn start<S: LiveStore, C: Clock, L: Listener, B: BroadcastPort>(
    plan: LivePlan<S, C, L, B>,
    stop: watch::Receiver<bool>,
) -> LiveTasks {
    let history_loads = Arc::new(tokio::sync::Semaphore::new(HISTORY_LOADS));
    // Written by the broadcast consumer, read by the shards' snapshot loads.
    let tracks = Arc::new(Mutex::new(TrackStore::new_for(&plan.config)));
    let replay_budget = Arc::new(ReplayBudget::new(plan.config.replay_max_total));
    let mut senders = Vec::new();
    let mut shard_tasks = Vec::new();
    for _ in 0..plan.shards.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        // Unconstrained: tokio's cooperative budget would have a shard's non-blocking writes
        // report "not ready" after 128 socket operations in one turn, handing every socket
        // after those to a writer task. The shard yields after every turn instead.
        shard_tasks.push(tokio::spawn(tokio::task::unconstrained(shard::run(
            ShardContext {
                config: plan.config.clone(),
                store: plan.store.clone(),
                clock: plan.clock.clone(),
                metrics: plan.metrics.clone(),
                auth: plan.auth.clone(),
                history_loads: history_loads.clone(),
                tracks: tracks.clone(),
                replay_budget: replay_budget.clone(),
            },
            rx,
            tx.clone(),
            stop.clone(),
        ))));
        senders.push(tx);
    }
    let shards = Shards::new(senders);
    let server = tokio::spawn(http::serve(
        plan.listener,
        Arc::new(
            WsContext::new(
                plan.auth,
                shards.clone(),
                plan.limits,
                ConnectionSlots::new(plan.max_connections),
                plan.metrics.clone(),
                plan.store.clone(),
                plan.clock.clone(),
            )
            .with_map_page(plan.map_page),
        ),
        stop.clone(),
    ));
    let (map_tx, map_rx) = watch::channel(None);
    let consumer = broadcast::run(
        BroadcastContext {
            port: plan.broadcast,
            config: plan.config,
            clock: plan.clock,
            shards: shards.clone(),
            metrics: plan.metrics,
            readiness: plan.readiness,
            tracks,
        },
        map_rx,
        stop.clone(),
    );
    let broadcast = match plan.ingest {
        IngestPlacement::Task => tokio::spawn(consumer),
        IngestPlacement::OwnThread => on_own_thread(consumer),
    };
    let device_map = tokio::spawn(super::device_map::run(
        plan.store,
        plan.map_refresh,
        shards,
        map_tx,
        stop,
    ));
    LiveTasks {
        server,
        shards: shard_tasks,
        device_map,
        broadcast,
    }
}

impl LiveTasks {
    /// Waits for every task, in the contract's order: no new clients, clients closed with
    /// 1001, then the map refresh and the broadcast consumer.
    pub async fn join(self) {
        let _ = self.server.await;
        for shard in self.shards {
            let _ = shard.await;
        }
        let _ = self.device_map.await;
        let _ = self.broadcast.await;
    }
}

/// Runs `task` on a new OS thread with a single-threaded runtime; the handle ends with it.
fn on_own_thread(task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "no runtime for the broadcast consumer's thread; running it as a task");
            return tokio::spawn(task);
        }
    };
    let (done_tx, done) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("live-ingest".into())
        .spawn(move || {
            runtime.block_on(task);
            let _ = done_tx.send(());
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the broadcast consumer's thread");
    }
    tokio::spawn(async move {
        let _ = done.await;
    })
}
