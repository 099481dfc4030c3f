//! The hub task: feeds the core's `LiveHub` and executes its commands.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use processor_core::live::{Command, ConnId, LiveConfig, LiveHub, LiveStats};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::postgres::events::VisibilityCache;

use super::ports::LiveStore;
use super::{HubInput, Outbound};

/// How long an event's visibility is trusted before it is read again.
const VISIBILITY_TTL_MS: u64 = 5_000;
const VISIBILITY_CACHE_SIZE: usize = 10_000;
const GAUGE_INTERVAL: Duration = Duration::from_millis(250);
/// Longest the hub works through queued inputs before it lets other tasks on its worker run.
const MAX_STREAK: Duration = Duration::from_millis(5);

pub struct HubContext<S: LiveStore, C: Clock> {
    pub config: LiveConfig,
    pub store: S,
    pub clock: C,
    pub metrics: Arc<Metrics>,
}

/// Runs until `stop`; then closes every client with 1001 and returns.
pub async fn run<S: LiveStore, C: Clock>(
    ctx: HubContext<S, C>,
    mut inputs: mpsc::UnboundedReceiver<HubInput>,
    answers: mpsc::UnboundedSender<HubInput>,
    mut stop: watch::Receiver<bool>,
) {
    let mut hub = LiveHub::new(ctx.config.clone(), ctx.clock.now());
    let mut conns: BTreeMap<ConnId, mpsc::UnboundedSender<Outbound>> = BTreeMap::new();
    let cache = Arc::new(Mutex::new(VisibilityCache::new(
        VISIBILITY_TTL_MS,
        VISIBILITY_CACHE_SIZE,
    )));
    let mut stats = hub.counters();
    let mut gauges_at = tokio::time::Instant::now();
    // Since when the hub has been taking queued inputs without waiting.
    let mut streak: Option<tokio::time::Instant> = None;
    loop {
        while let Some(command) = hub.poll_command() {
            execute(&ctx, command, &mut conns, &cache, &answers);
        }
        let now_stats = hub.counters();
        record(&ctx.metrics, &stats, &now_stats);
        stats = now_stats;
        // The gauges walk every connection: a few times a second is plenty for a scrape.
        if gauges_at.elapsed() >= GAUGE_INTERVAL {
            record_gauges(&ctx.metrics, &hub.stats());
            gauges_at = tokio::time::Instant::now();
        }
        if *stop.borrow() {
            shut_down(
                &ctx,
                &mut hub,
                &mut conns,
                &cache,
                &answers,
                &mut inputs,
                &stats,
            );
            break;
        }
        let now = ctx.clock.now();
        let deadline = hub.poll_timeout();
        if deadline.is_some_and(|d| d <= now) {
            hub.handle_timeout(now);
            continue;
        }
        // Inputs already queued are taken without a `select!`: under load that is nearly
        // every turn, and a `select!` would arm (and drop) a timer and a stop waiter each
        // time. The checks above keep the stop and the deadlines ahead of a busy queue.
        match inputs.try_recv() {
            Ok(input) => {
                feed(&mut hub, &mut conns, input, now);
                // The hub is the one serial stage, so it keeps its worker while inputs wait
                // (yielding on tokio's budget, every 128 inputs, made it fall behind at
                // 350,000 messages/s: BENCHMARKS.md), but not for longer than MAX_STREAK,
                // so a writer it woke on this worker is not held up for long.
                let since = *streak.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= MAX_STREAK {
                    streak = None;
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => streak = None,
        }
        let timer = deadline.map(|t| ctx.clock.until(t));
        // A fixed polling order (not tokio's random one) keeps a simulated run replayable.
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => {
                shut_down(&ctx, &mut hub, &mut conns, &cache, &answers, &mut inputs, &stats);
                break;
            }
            _ = tokio::time::sleep(timer.unwrap_or(Duration::MAX)), if timer.is_some() => {
                hub.handle_timeout(ctx.clock.now());
            }
            input = inputs.recv() => match input {
                Some(input) => feed(&mut hub, &mut conns, input, ctx.clock.now()),
                None => break,
            },
        }
    }
    // Dropping the senders ends every writer task once it has sent what it was given.
    conns.clear();
}

/// Closes every client with 1001, those whose connection is still queued too, and records
/// the last counts.
fn shut_down<S: LiveStore, C: Clock>(
    ctx: &HubContext<S, C>,
    hub: &mut LiveHub,
    conns: &mut BTreeMap<ConnId, mpsc::UnboundedSender<Outbound>>,
    cache: &Arc<Mutex<VisibilityCache>>,
    answers: &mpsc::UnboundedSender<HubInput>,
    inputs: &mut mpsc::UnboundedReceiver<HubInput>,
    stats: &LiveStats,
) {
    hub.handle_shutdown(ctx.clock.now());
    while let Ok(input) = inputs.try_recv() {
        feed(hub, conns, input, ctx.clock.now());
    }
    while let Some(command) = hub.poll_command() {
        execute(ctx, command, conns, cache, answers);
    }
    record(&ctx.metrics, stats, &hub.counters());
    record_gauges(&ctx.metrics, &hub.stats());
}

fn feed(
    hub: &mut LiveHub,
    conns: &mut BTreeMap<ConnId, mpsc::UnboundedSender<Outbound>>,
    input: HubInput,
    now: processor_core::UnixMillis,
) {
    match input {
        HubInput::Connected {
            conn,
            principal,
            outbound,
        } => {
            conns.insert(conn, outbound);
            hub.handle_connected(now, conn, principal);
        }
        HubInput::Text { conn, text } => hub.handle_client_text(now, conn, &text),
        HubInput::Binary { conn } => hub.handle_client_binary(now, conn),
        HubInput::TooLarge { conn } => hub.handle_client_too_large(now, conn),
        HubInput::Pong { conn } => hub.handle_pong(now, conn),
        HubInput::Drained { conn, bytes } => hub.handle_drained(now, conn, bytes),
        HubInput::Closed { conn } => {
            conns.remove(&conn);
            hub.handle_closed(now, conn);
        }
        HubInput::Positions(entries) => hub.handle_positions(now, entries),
        HubInput::DeviceMap { version, map } => hub.handle_device_map(now, version, map),
        HubInput::Authorized {
            request,
            visibility,
        } => match visibility {
            Ok(v) => hub.handle_authorization(now, request, v),
            Err(error) => {
                tracing::warn!(%error, "event visibility look-up failed");
                hub.handle_authorization_failed(now, request);
            }
        },
        HubInput::Snapshot { request, positions } => match positions {
            Ok(p) => hub.handle_snapshot(now, request, p),
            Err(error) => {
                tracing::warn!(%error, "snapshot load failed");
                hub.handle_snapshot_failed(now, request);
            }
        },
    }
}

fn execute<S: LiveStore, C: Clock>(
    ctx: &HubContext<S, C>,
    command: Command,
    conns: &mut BTreeMap<ConnId, mpsc::UnboundedSender<Outbound>>,
    cache: &Arc<Mutex<VisibilityCache>>,
    answers: &mpsc::UnboundedSender<HubInput>,
) {
    match command {
        Command::Send {
            conn,
            bytes,
            fix_ts,
        } => {
            if let Some(out) = conns.get(&conn) {
                let _ = out.send(Outbound::Text { bytes, fix_ts });
            }
        }
        Command::Ping { conn } => {
            if let Some(out) = conns.get(&conn) {
                let _ = out.send(Outbound::Ping);
            }
        }
        Command::Close { conn, code, reason } => {
            if let Some(out) = conns.remove(&conn) {
                let _ = out.send(Outbound::Close { code, reason });
            }
        }
        Command::Authorize { request, topic, .. } => {
            let event = topic.event_id();
            let now = ctx.clock.now().as_i64().max(0) as u64;
            let cached = cache.lock().ok().and_then(|c| c.get(event, now));
            if let Some(visibility) = cached {
                let _ = answers.send(HubInput::Authorized {
                    request,
                    visibility: Ok(visibility),
                });
                return;
            }
            let (store, clock) = (ctx.store.clone(), ctx.clock.clone());
            let (cache, answers) = (cache.clone(), answers.clone());
            tokio::spawn(async move {
                let visibility = store.visibility(event).await.map_err(|e| e.to_string());
                if let (Ok(v), Ok(mut c)) = (&visibility, cache.lock()) {
                    c.insert(event, *v, clock.now().as_i64().max(0) as u64);
                }
                let _ = answers.send(HubInput::Authorized {
                    request,
                    visibility,
                });
            });
        }
        Command::LoadSnapshot {
            request, devices, ..
        } => {
            let (store, answers) = (ctx.store.clone(), answers.clone());
            tokio::spawn(async move {
                let positions = store.snapshot(devices).await.map_err(|e| e.to_string());
                let _ = answers.send(HubInput::Snapshot { request, positions });
            });
        }
    }
}

fn record(metrics: &Metrics, before: &LiveStats, now: &LiveStats) {
    metrics
        .live_broadcast_records
        .inc_by(now.broadcast_records - before.broadcast_records);
    metrics
        .live_broadcast_decode_errors
        .inc_by(now.decode_errors - before.decode_errors);
    metrics
        .live_broadcast_orphan_records
        .inc_by(now.orphan_records - before.orphan_records);
    metrics
        .live_broadcast_fanout_messages
        .inc_by(now.fanout_messages - before.fanout_messages);
    metrics
        .live_conflated_messages
        .inc_by(now.conflated_messages - before.conflated_messages);
    metrics
        .live_slow_consumer_closes
        .inc_by(now.slow_consumer_closes - before.slow_consumer_closes);
}

fn record_gauges(metrics: &Metrics, now: &LiveStats) {
    metrics
        .live_connections
        .set(i64::try_from(now.connections).unwrap_or(i64::MAX));
    metrics
        .live_subscriptions
        .set(i64::try_from(now.subscriptions).unwrap_or(i64::MAX));
}
