//! The durable event loop: feed the core, execute its commands, repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use processor_core::durable::{
    Command, DurableConfig, DurableWriter, Input, StreamFailure, WriteFailure,
};
use processor_core::Now;

use super::ports::{StorePort, StreamPort};
use super::reader::{self, ReadRequest};
use crate::clock::{Clock, MonoClock};
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// Everything the durable loop runs against.
pub struct DurableContext<S, P, C> {
    pub stream: S,
    pub store: P,
    pub clock: C,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub config: DurableConfig,
    /// On shutdown, how long to wait for held entries to be stored before giving up on them
    /// (they stay pending, unacked, for another instance or the next start).
    pub grace: Duration,
}

/// Runs until `stop` turns true and everything held is settled (or the grace time is over).
pub async fn run<S: StreamPort, P: StorePort, C: Clock>(
    ctx: DurableContext<S, P, C>,
    mut stop: watch::Receiver<bool>,
) {
    // Every answer, the reader's included, comes back as the core's input.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Input>();
    let (read_tx, read_rx) = mpsc::channel::<ReadRequest>(1);
    let reader = tokio::spawn(reader::serve(ctx.stream.reader(), read_rx, done_tx.clone()));

    let mono = MonoClock::start();
    let now = || Now {
        mono: mono.now(),
        wall: ctx.clock.now(),
    };
    let mut core = DurableWriter::new(ctx.config.clone(), now());
    let mut stats = core.stats();
    let mut outstanding = 0usize;
    let mut give_up_at: Option<tokio::time::Instant> = None;
    ctx.readiness.set_durable_consumer(true);

    loop {
        while let Some(command) = core.poll_command() {
            outstanding += execute(&ctx, command, &read_tx, &done_tx);
        }
        let now_stats = core.stats();
        ctx.metrics.record_durable(&stats, &now_stats);
        stats = now_stats;
        if core.is_stopped() && outstanding == 0 {
            break;
        }
        let timer = core.poll_timeout().map(|t| mono.instant(t));
        // Polled in this order, not at random: the same inputs make the same run, which the
        // network simulation replays by seed. Stop and timers come first so that a busy
        // stream of completions cannot hold them back.
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s), if give_up_at.is_none() => {
                tracing::info!(held = core.held(), "durable consumer stopping: settling what it holds");
                give_up_at = Some(tokio::time::Instant::now() + ctx.grace);
                core.handle(now(), Input::Shutdown);
            }
            _ = tokio::time::sleep_until(give_up_at.unwrap_or_else(tokio::time::Instant::now)), if give_up_at.is_some() => {
                tracing::warn!(
                    held = core.held(),
                    "durable consumer: grace time over; what is not committed stays pending, unacked"
                );
                break;
            }
            _ = tokio::time::sleep_until(timer.unwrap_or_else(tokio::time::Instant::now)), if timer.is_some() => {
                core.handle(now(), Input::Timeout);
            }
            Some(done) = done_rx.recv() => {
                outstanding -= 1;
                feed(&ctx, &mut core, now(), done);
            }
        }
    }
    drop(read_tx);
    ctx.readiness.set_durable_consumer(false);
    // The reader finishes the read it is in (bounded by BLOCK) and ends.
    let _ = reader.await;
    tracing::info!("durable consumer stopped");
}

/// Starts one command; returns how many answers it will produce.
fn execute<S: StreamPort, P: StorePort, C: Clock>(
    ctx: &DurableContext<S, P, C>,
    command: Command,
    read_tx: &mpsc::Sender<ReadRequest>,
    done: &mpsc::UnboundedSender<Input>,
) -> usize {
    match command {
        Command::Read { from, count } => {
            // The core keeps one read in flight, so the one-slot channel always has room.
            if read_tx.try_send(ReadRequest { from, count }).is_err() {
                tracing::error!("durable reader is gone");
                return 0;
            }
        }
        Command::Claim {
            cursor,
            min_idle_ms,
            count,
        } => {
            let (stream, done) = (ctx.stream.clone(), done.clone());
            tokio::spawn(async move {
                let result = stream.claim(cursor, min_idle_ms, count).await;
                let _ = done.send(Input::Claimed(result.map_err(StreamFailure::new)));
            });
        }
        Command::Write { id, rows } => {
            let (store, metrics, done) = (ctx.store.clone(), ctx.metrics.clone(), done.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = store.write(&rows).await;
                if result.is_ok() {
                    metrics
                        .durable_write_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                let _ = done.send(Input::Written(id, result));
            });
        }
        Command::DeadLetter { id, entries } => {
            for entry in &entries {
                tracing::warn!(entry_id = %entry.source_id, reason = %entry.reason, "dead-lettering entry");
            }
            let (stream, done) = (ctx.stream.clone(), done.clone());
            tokio::spawn(async move {
                let result = stream.dead_letter(&entries).await;
                let _ = done.send(Input::DeadLettered(id, result.map_err(StreamFailure::new)));
            });
        }
        Command::Ack(ids) => {
            let (stream, done) = (ctx.stream.clone(), done.clone());
            tokio::spawn(async move {
                let result = stream.ack(&ids).await;
                let _ = done.send(Input::Acked(result.map_err(StreamFailure::new)));
            });
        }
    }
    1
}

/// Logs what an answer says and keeps readiness up to date, then hands it to the core.
fn feed<S: StreamPort, P: StorePort, C: Clock>(
    ctx: &DurableContext<S, P, C>,
    core: &mut DurableWriter,
    now: Now,
    input: Input,
) {
    match &input {
        Input::Read(Ok(_)) => ctx.readiness.set_redis(true),
        Input::Read(Err(error)) => {
            tracing::warn!(%error, "durable read failed; retrying");
            ctx.readiness.set_redis(false);
        }
        Input::Claimed(Err(error)) => tracing::warn!(%error, "claiming idle entries failed"),
        Input::Written(_, Ok(_)) => ctx.readiness.set_postgres(true),
        Input::Written(_, Err(WriteFailure::Transient(reason))) => {
            ctx.readiness.set_postgres(false);
            tracing::warn!(%reason, "insert failed; will retry the same rows");
        }
        Input::Written(_, Err(WriteFailure::Rejected { reason, .. })) => {
            tracing::warn!(%reason, "Postgres rejected a row; isolating it");
        }
        Input::DeadLettered(_, Err(error)) => {
            tracing::warn!(%error, "writing to the dead-letter stream failed; will retry")
        }
        Input::Acked(Err(error)) => {
            tracing::warn!(%error, "ack failed; the entries stay pending and are read again")
        }
        _ => {}
    }
    core.handle(now, input);
}
