//! A hub shard: one task running one core `LiveHub` for the connections given to it, and
//! writing to their sockets itself.
//!
//! Each turn takes every input already queued (a stream batch, client frames, answers),
//! hands each to the core and executes its commands into the connections' output buffers,
//! then writes each connection that got bytes once, without waiting, and reports what its
//! socket took. Nothing per message crosses a task or arms a timer: the core's deadlines
//! (pings, stalled writes) are the shard's one timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use processor_core::live::replay_budget::ReplayBudget;
use processor_core::live::{
    Command, ConnId, FanoutBatch, HistoryQuery, Input, LiveConfig, LiveHub, LiveStats,
    LookupFailed, TokenRefused, TrackStore,
};
use processor_core::UnixMillis;

use crate::auth::Authenticator;
use crate::clock::{Clock, MonoClock};
use crate::metrics::Metrics;
use crate::postgres::history::trail_parts;
use processor_core::Now;

use super::conn_io::{ConnIo, Flushed};
use super::input::ShardInput;
use super::ports::LiveStore;

/// Inputs taken in one turn at most, so that writes are not held back for long.
const MAX_TURN: usize = 256;
/// The gauges are recorded at most this often (a scrape is seconds apart).
const GAUGE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

pub struct ShardContext<S: LiveStore, C: Clock> {
    pub config: LiveConfig,
    pub store: S,
    pub clock: C,
    pub metrics: Arc<Metrics>,
    /// Shared by the shards: one look-up serves every shard's subscribers of an event.
    /// Verifies the tokens clients send in `auth` messages.
    pub auth: Authenticator,
    /// Permits for snapshots with history, shared by the shards (see
    /// [`HISTORY_LOADS`](super::live_path::HISTORY_LOADS)).
    pub history_loads: Arc<tokio::sync::Semaphore>,
    /// The instance's recent tracks: snapshots read Postgres only for what it lacks.
    pub tracks: Arc<Mutex<TrackStore>>,
    /// `LIVE_REPLAY_MAX_TOTAL`, shared by the shards.
    pub replay_budget: Arc<ReplayBudget>,
}

struct Shard<S: LiveStore, C: Clock> {
    ctx: ShardContext<S, C>,
    hub: LiveHub,
    me: mpsc::UnboundedSender<ShardInput>,
    conns: HashMap<ConnId, ConnIo>,
    dirty: Vec<ConnId>,
    closers: Vec<JoinHandle<()>>,
    /// Batches handled this turn: their lag is observed once their frames are written.
    batches: Vec<Arc<FanoutBatch>>,
    counted: LiveStats,
    gauged: LiveStats,
    gauges_at: tokio::time::Instant,
    /// The hub's deadlines run on this clock; its wall clock is the context's.
    mono: MonoClock,
}

/// Runs until `stop`; then closes every client with 1001 and returns once their close
/// frames are out (or their linger ran out).
pub async fn run<S: LiveStore, C: Clock>(
    ctx: ShardContext<S, C>,
    mut inputs: mpsc::UnboundedReceiver<ShardInput>,
    me: mpsc::UnboundedSender<ShardInput>,
    mut stop: watch::Receiver<bool>,
) {
    let mono = MonoClock::start();
    let hub = LiveHub::sharing(
        ctx.config.clone(),
        Now {
            mono: mono.now(),
            wall: ctx.clock.now(),
        },
        ctx.replay_budget.clone(),
    );
    let mut shard = Shard {
        ctx,
        hub,
        me,
        conns: HashMap::new(),
        dirty: Vec::new(),
        closers: Vec::new(),
        batches: Vec::new(),
        counted: LiveStats::default(),
        gauged: LiveStats::default(),
        gauges_at: tokio::time::Instant::now(),
        mono,
    };
    let mut turn = Vec::with_capacity(MAX_TURN);
    loop {
        // Inputs already queued are taken without a `select!` (which would arm and drop a
        // timer and a stop waiter every turn under load).
        while turn.len() < MAX_TURN {
            match inputs.try_recv() {
                Ok(input) => turn.push(input),
                Err(_) => break,
            }
        }
        if turn.is_empty() {
            let timer = shard.hub.poll_timeout().map(|t| shard.mono.instant(t));
            // A fixed polling order (not tokio's random one) keeps a simulated run
            // replayable.
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep_until(timer.unwrap_or_else(tokio::time::Instant::now)), if timer.is_some() => {}
                n = inputs.recv_many(&mut turn, MAX_TURN) => if n == 0 { break },
            }
        }
        let now = shard.now();
        for input in turn.drain(..) {
            shard.feed(now, input);
        }
        if shard.hub.poll_timeout().is_some_and(|t| t <= now.mono) {
            shard.hub.handle(now, Input::Timeout);
            shard.execute();
        }
        shard.write(now);
        shard.record(now.wall);
        if *stop.borrow() {
            break;
        }
        // Readers and writers this turn woke may share the shard's worker.
        tokio::task::yield_now().await;
    }
    shard.shut_down(&mut inputs).await;
}

impl<S: LiveStore, C: Clock> Shard<S, C> {
    /// Both clocks, read together.
    fn now(&self) -> Now {
        Now {
            mono: self.mono.now(),
            wall: self.ctx.clock.now(),
        }
    }

    fn feed(&mut self, now: Now, input: ShardInput) {
        match input {
            ShardInput::Core(input) => {
                match &input {
                    Input::Batch(batch) => self.batches.push(batch.clone()),
                    // The client went away: its socket and tasks go with it.
                    Input::Closed { conn } => {
                        if let Some(io) = self.conns.remove(conn) {
                            io.drop_now();
                        }
                    }
                    _ => {}
                }
                self.hub.handle(now, input);
            }
            ShardInput::Attach {
                conn,
                socket,
                reader,
            } => {
                self.conns.insert(conn, ConnIo::new(socket, reader));
            }
            ShardInput::WriterDone { conn, failed } => {
                if failed {
                    if let Some(io) = self.conns.remove(&conn) {
                        io.drop_now();
                    }
                    self.hub.handle(now, Input::Closed { conn });
                } else if let Some(io) = self.conns.get_mut(&conn) {
                    io.writer_done();
                    mark_dirty(&mut self.dirty, conn, io);
                }
            }
        }
        self.execute();
    }

    fn execute(&mut self) {
        while let Some(command) = self.hub.poll_command() {
            match command {
                Command::Send { conn, frame } => {
                    if let Some(io) = self.conns.get_mut(&conn) {
                        io.queue(&frame);
                        mark_dirty(&mut self.dirty, conn, io);
                    }
                }
                Command::Close { conn, code, reason } => {
                    if let Some(io) = self.conns.remove(&conn) {
                        self.closers.push(io.close(code, reason));
                    }
                }
                Command::Authorize { request, topic, .. } => {
                    let event = topic.event_id();
                    let (store, me) = (self.ctx.store.clone(), self.me.clone());
                    tokio::spawn(async move {
                        let visibility = store.visibility(event).await;
                        let visibility = visibility.map_err(|error| {
                            tracing::warn!(%error, "event visibility look-up failed");
                            LookupFailed(error.to_string())
                        });
                        let input = Input::Visibility {
                            request,
                            visibility,
                        };
                        let _ = me.send(ShardInput::Core(input));
                    });
                }
                Command::VerifyToken { conn, token } => {
                    let now = self.now();
                    let now_s = u64::try_from(now.wall.as_i64() / 1_000).unwrap_or(0);
                    // The error's text never holds the token.
                    let result = self
                        .ctx
                        .auth
                        .verify_grant(&token, now_s)
                        .map_err(|error| TokenRefused(error.to_string()));
                    self.hub.handle(now, Input::TokenVerified { conn, result });
                }
                Command::LoadReplaySnapshot {
                    request,
                    devices,
                    at,
                    history,
                    ..
                } => {
                    let (store, me) = (self.ctx.store.clone(), self.me.clone());
                    let permits = self.ctx.history_loads.clone();
                    tokio::spawn(async move {
                        // A trail at the replay time reads as much as a live one.
                        let _permits = match history {
                            HistoryQuery::Trail { .. } => permits
                                .acquire_many_owned(trail_connections(devices.len()))
                                .await
                                .ok(),
                            _ => None,
                        };
                        let rows = store.replay_snapshot(devices, at, history).await;
                        let rows = rows.map_err(|error| {
                            tracing::warn!(%error, "replay snapshot load failed");
                            LookupFailed(error.to_string())
                        });
                        let input = Input::ReplaySnapshot { request, rows };
                        let _ = me.send(ShardInput::Core(input));
                    });
                }
                Command::LoadReplayPage {
                    request,
                    devices,
                    after,
                    to,
                    limit,
                    ..
                } => {
                    let (store, me) = (self.ctx.store.clone(), self.me.clone());
                    tokio::spawn(async move {
                        let rows =
                            store
                                .replay_page(devices, after, to, limit)
                                .await
                                .map_err(|error| {
                                    tracing::warn!(%error, "replay page load failed");
                                    LookupFailed(error.to_string())
                                });
                        let _ = me.send(ShardInput::Core(Input::ReplayPage { request, rows }));
                    });
                }
                Command::LoadSnapshot {
                    request,
                    devices,
                    history,
                    ..
                } => {
                    let mut held = self
                        .ctx
                        .tracks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .answer(&devices, history);
                    let unknown_devices = std::mem::take(&mut held.unknown);
                    let held_rows = held.into_rows();
                    let metrics = &self.ctx.metrics;
                    let unknown = unknown_devices.len();
                    metrics
                        .live_snapshot_memory_devices
                        .inc_by((devices.len() - unknown) as u64);
                    metrics
                        .live_snapshot_postgres_devices
                        .inc_by(unknown as u64);
                    if unknown_devices.is_empty() {
                        self.hub.handle(
                            self.now(),
                            Input::Snapshot {
                                request,
                                rows: Ok(held_rows),
                            },
                        );
                        continue;
                    }
                    let (store, me) = (self.ctx.store.clone(), self.me.clone());
                    let permits = self.ctx.history_loads.clone();
                    tokio::spawn(async move {
                        // The newest position per device is cheap; history waits its turn.
                        let connections = match history {
                            HistoryQuery::Latest => 0,
                            HistoryQuery::Since { .. } => 1,
                            HistoryQuery::Trail { .. } => trail_connections(unknown),
                        };
                        let _permits = match connections {
                            0 => None,
                            n => permits.acquire_many_owned(n).await.ok(),
                        };
                        let rows = store
                            .snapshot(unknown_devices, history)
                            .await
                            .map(|mut stored| {
                                stored.extend(held_rows);
                                stored
                            })
                            .map_err(|error| {
                                tracing::warn!(%error, "snapshot load failed");
                                LookupFailed(error.to_string())
                            });
                        let _ = me.send(ShardInput::Core(Input::Snapshot { request, rows }));
                    });
                }
            }
        }
    }

    /// Writes every connection that got bytes, once each; what the sockets took can let
    /// parked positions out, which are written in the same pass.
    fn write(&mut self, now: Now) {
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for &conn in &dirty {
                let Some(io) = self.conns.get_mut(&conn) else {
                    continue;
                };
                io.dirty = false;
                match io.flush(conn, &self.me) {
                    Flushed::Idle => continue,
                    Flushed::Took(bytes) => {
                        self.hub.handle(now, Input::Written { conn, bytes });
                    }
                    Flushed::Failed(bytes) => {
                        if let Some(io) = self.conns.remove(&conn) {
                            io.drop_now();
                        }
                        self.hub.handle(now, Input::Written { conn, bytes });
                        self.hub.handle(now, Input::Closed { conn });
                    }
                }
                self.execute();
            }
            if self.dirty.is_empty() {
                // Keep the allocation for the next turn.
                self.dirty = dirty;
                self.dirty.clear();
            }
        }
        self.closers.retain(|closer| !closer.is_finished());
    }

    /// Counters after every turn, the lag of this turn's batches (fix time to written, once
    /// per position and shard that has clients), gauges a few times a second.
    fn record(&mut self, now: UnixMillis) {
        let metrics = &self.ctx.metrics;
        if !self.conns.is_empty() {
            for batch in &self.batches {
                for ts in batch.fix_times() {
                    metrics
                        .live_broadcast_lag_ms
                        .observe(now.since(ts).max(0) as f64);
                }
            }
        }
        self.batches.clear();
        let counters = self.hub.counters();
        record_counters(metrics, &self.counted, &counters);
        self.counted = counters;
        if self.gauges_at.elapsed() >= GAUGE_INTERVAL {
            let gauges = self.hub.stats();
            record_gauges(metrics, &self.gauged, &gauges);
            self.gauged = gauges;
            self.gauges_at = tokio::time::Instant::now();
        }
    }

    /// Closes every client with 1001, those whose connection is still queued too, and
    /// waits for the close frames to go out.
    async fn shut_down(mut self, inputs: &mut mpsc::UnboundedReceiver<ShardInput>) {
        let now = self.now();
        self.hub.handle(now, Input::Shutdown);
        self.execute();
        inputs.close();
        while let Ok(input) = inputs.try_recv() {
            self.feed(now, input);
        }
        self.write(now);
        // In connection order, not the map's (random) one: a simulated run replays by seed.
        let mut conns: Vec<_> = self.conns.drain().collect();
        conns.sort_unstable_by_key(|(conn, _)| *conn);
        for (_, io) in conns {
            io.drop_now();
        }
        let counters = self.hub.counters();
        record_counters(&self.ctx.metrics, &self.counted, &counters);
        record_gauges(&self.ctx.metrics, &self.gauged, &self.hub.stats());
        for closer in self.closers.drain(..) {
            let _ = closer.await;
        }
    }
}

fn mark_dirty(dirty: &mut Vec<ConnId>, conn: ConnId, io: &mut ConnIo) {
    if !io.dirty {
        io.dirty = true;
        dirty.push(conn);
    }
}

fn record_counters(metrics: &Metrics, before: &LiveStats, now: &LiveStats) {
    metrics
        .live_broadcast_fanout_messages
        .inc_by(now.fanout_messages - before.fanout_messages);
    metrics
        .live_conflated_messages
        .inc_by(now.conflated_messages - before.conflated_messages);
    let pairs = [
        (
            &metrics.live_position_deliveries,
            before.position_deliveries,
            now.position_deliveries,
        ),
        (
            &metrics.live_dropped_messages,
            before.dropped_messages,
            now.dropped_messages,
        ),
        (
            &metrics.live_ping_timeout_closes,
            before.ping_timeouts,
            now.ping_timeouts,
        ),
        (
            &metrics.live_protocol_error_closes,
            before.protocol_errors,
            now.protocol_errors,
        ),
        (
            &metrics.live_token_expiry_closes,
            before.token_expiries,
            now.token_expiries,
        ),
        (
            &metrics.live_rate_limited_messages,
            before.rate_limited,
            now.rate_limited,
        ),
        (
            &metrics.live_revoked_subscriptions,
            before.revoked_subscriptions,
            now.revoked_subscriptions,
        ),
        (&metrics.live_snapshots, before.snapshots, now.snapshots),
        (
            &metrics.live_lookup_failures,
            before.lookup_failures,
            now.lookup_failures,
        ),
    ];
    for (counter, before, now) in pairs {
        counter.inc_by(now - before);
    }
    // A socket that took nothing within the write timeout is a slow consumer too.
    metrics.live_slow_consumer_closes.inc_by(
        (now.slow_consumer_closes + now.write_timeouts)
            - (before.slow_consumer_closes + before.write_timeouts),
    );
}

/// Every shard adds its own change, so the gauges hold the sum over shards.
fn record_gauges(metrics: &Metrics, before: &LiveStats, now: &LiveStats) {
    let delta = |a: u64, b: u64| {
        i64::try_from(b).unwrap_or(i64::MAX) - i64::try_from(a).unwrap_or(i64::MAX)
    };
    metrics
        .live_connections
        .inc_by(delta(before.connections, now.connections));
    metrics
        .live_subscriptions
        .inc_by(delta(before.subscriptions, now.subscriptions));
}

/// History permits a trail read of `devices` devices takes: one per connection it reads
/// over.
fn trail_connections(devices: usize) -> u32 {
    u32::try_from(trail_parts(devices)).unwrap_or(1)
}
