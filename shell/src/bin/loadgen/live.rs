//! The live-path clients (`loadgen` without a subcommand; scripts/bench-live.sh): C
//! WebSocket clients over E events, measuring what the live path delivers.
//!
//! Client i subscribes to event i mod E, whose UUID follows the Node.js baseline's rule
//! (`00000000-0000-4000-8000-<e as 12 hex digits>`), so the same command measures both.
//! Latency is receive time minus the position's fix time: `fleet stream` stamps fixes with
//! the wall clock as it publishes, so this is XADD to client receive (same machine clock).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use super::frame::fix_ts;

#[derive(Args)]
pub struct LiveArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/live")]
    url: String,
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    events: usize,
    /// Every client subscribes to this event instead (`--events` is then ignored).
    #[arg(long)]
    event: Option<uuid::Uuid>,
    /// Measure for this long after every client has subscribed.
    #[arg(long, default_value_t = 30)]
    duration_s: u64,
    /// Hold the connections idle (no subscription) and report nothing but connects.
    #[arg(long)]
    idle: bool,
}

#[derive(Default)]
struct Totals {
    delivered: u64,
    closed: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn event_uuid(e: usize) -> String {
    format!("00000000-0000-4000-8000-{e:012x}")
}

pub async fn run(cli: LiveArgs) -> Result<(), String> {
    let latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000, 3).map_err(|e| e.to_string())?,
    ));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut ready = Vec::with_capacity(cli.clients);
    let mut tasks = Vec::with_capacity(cli.clients);
    for i in 0..cli.clients {
        let (ws, _) = tokio_tungstenite::connect_async(cli.url.as_str())
            .await
            .map_err(|e| format!("client {i} cannot connect: {e}"))?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        let topic = match cli.event {
            Some(event) => format!("event:{event}"),
            None => format!("event:{}", event_uuid(i % cli.events.max(1))),
        };
        let (latency, totals, measuring) = (latency.clone(), totals.clone(), measuring.clone());
        let idle = cli.idle;
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            if !idle {
                let subscribe = format!(r#"{{"type":"subscribe","topic":"{topic}"}}"#);
                if sink.send(Message::Text(subscribe.into())).await.is_err() {
                    return;
                }
            }
            let mut ready_tx = Some(ready_tx);
            if idle {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
            while let Some(frame) = stream.next().await {
                let Ok(Message::Text(text)) = frame else {
                    if matches!(frame, Ok(Message::Close(_)) | Err(_)) {
                        break;
                    }
                    continue;
                };
                // A full JSON parse per message would make the load generator the bottleneck:
                // the server writes `type` first, and `ts` is the only field measured.
                if text.starts_with(r#"{"type":"snapshot""#) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                } else if text.starts_with(r#"{"type":"position""#)
                    && measuring.load(std::sync::atomic::Ordering::Relaxed)
                {
                    let lag = (now_ms() - fix_ts(&text).unwrap_or(0)).max(1) as u64;
                    if let Ok(mut h) = latency.lock() {
                        let _ = h.record(lag.min(600_000));
                    }
                    if let Ok(mut t) = totals.lock() {
                        t.delivered += 1;
                    }
                }
            }
            if let Ok(mut t) = totals.lock() {
                t.closed += 1;
            }
        }));
    }
    for r in ready {
        let _ = r.await;
    }
    eprintln!(
        "loadgen: {} clients connected{}",
        cli.clients,
        if cli.idle { "" } else { " and subscribed" }
    );
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(cli.duration_s)).await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let (delivered, closed) = totals
        .lock()
        .map(|t| (t.delivered, t.closed))
        .unwrap_or_default();
    let h = latency
        .lock()
        .map_err(|_| "latency histogram poisoned".to_owned())?;
    println!(
        "{{\"mode\":\"loadgen\",\"clients\":{},\"events\":{},\"seconds\":{secs:.1},\"delivered\":{delivered},\"delivered_per_s\":{:.0},\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"closed\":{closed}}}",
        cli.clients,
        cli.events,
        delivered as f64 / secs,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    for t in tasks {
        t.abort();
    }
    Ok(())
}
