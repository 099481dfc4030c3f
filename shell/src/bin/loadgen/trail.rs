//! `loadgen trail`: how long a snapshot with trails takes, as a map page opening sees it.
//!
//! `count` times, one after the other: a new connection subscribes to the event with
//! `trail_s`, and the time from sending `subscribe` to receiving the whole `snapshot`
//! message (tungstenite hands it over once its last frame is in) is one sample. The
//! connection is then closed. Connecting is not timed. The snapshot is parsed after the
//! clock stopped, for its size: devices, and points (each device's position plus its
//! trail).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use uuid::Uuid;

use super::frame::{excerpt, kind};
use super::quantiles::Quantiles;
use super::socket::{self, Socket};

#[derive(Args)]
pub struct TrailArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/live")]
    url: String,
    /// The event to subscribe to.
    #[arg(long)]
    event: Uuid,
    /// The trail asked for, seconds.
    #[arg(long, default_value_t = 600)]
    trail_s: u64,
    /// Subscribes, one connection each, one after the other.
    #[arg(long, default_value_t = 50)]
    count: usize,
    /// Give up on a snapshot after this long.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// A name for this series, copied into the output (`warm`, `restarted`).
    #[arg(long, default_value = "")]
    label: String,
    /// Also print every sample, in order.
    #[arg(long)]
    each: bool,
}

/// What is printed, in this order; the snapshot's size is the last one's.
#[derive(Serialize)]
struct Report<'a> {
    mode: &'static str,
    label: &'a str,
    trail_s: u64,
    subscribes: usize,
    first_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    min_ms: f64,
    devices: usize,
    points: usize,
    with_trail: usize,
    snapshot_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<&'a [Sample]>,
}

/// One subscribe.
#[derive(Serialize)]
struct Sample {
    ms: f64,
    devices: usize,
    points: usize,
    /// Positions that carry a `trail` (all of them, when the server honours `trail_s`).
    #[serde(skip)]
    with_trail: usize,
    #[serde(skip)]
    bytes: usize,
}

#[derive(Deserialize)]
struct Snapshot {
    positions: Vec<SnapshotPosition>,
}

#[derive(Deserialize)]
struct SnapshotPosition {
    #[serde(rename = "deviceId")]
    device_id: String,
    #[serde(default)]
    trail: Option<Vec<serde::de::IgnoredAny>>,
}

pub async fn run(args: TrailArgs) -> Result<(), String> {
    if args.count == 0 {
        return Err("--count must be at least 1".into());
    }
    let subscribe = json!({
        "type": "subscribe",
        "topic": format!("event:{}", args.event),
        "trail_s": args.trail_s,
    })
    .to_string();
    let timeout = Duration::from_secs(args.timeout_s);
    let mut samples = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let sample = one(&args.url, &subscribe, timeout)
            .await
            .map_err(|e| format!("subscribe {} of {}: {e}", i + 1, args.count))?;
        samples.push(sample);
    }
    let quantiles = Quantiles::new(samples.iter().map(|s| s.ms).collect());
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let report = Report {
        mode: "trail",
        label: &args.label,
        trail_s: args.trail_s,
        subscribes: samples.len(),
        first_ms: round(first.ms),
        p50_ms: round(quantiles.at(0.5)),
        p99_ms: round(quantiles.at(0.99)),
        max_ms: round(quantiles.max()),
        min_ms: round(quantiles.min()),
        devices: last.devices,
        points: last.points,
        with_trail: last.with_trail,
        snapshot_bytes: last.bytes,
        samples: args.each.then_some(&samples),
    };
    let line = serde_json::to_string(&report).map_err(|e| format!("cannot print: {e}"))?;
    println!("{line}");
    Ok(())
}

async fn one(url: &str, subscribe: &str, timeout: Duration) -> Result<Sample, String> {
    let mut socket = socket::open(url).await?;
    let sent = Instant::now();
    socket
        .send(Message::Text(subscribe.into()))
        .await
        .map_err(|e| format!("cannot send subscribe: {e}"))?;
    let text = tokio::time::timeout(timeout, snapshot(&mut socket))
        .await
        .map_err(|_| format!("no snapshot within {} s", timeout.as_secs()))??;
    let ms = sent.elapsed().as_secs_f64() * 1_000.0;
    // The server answers the close; not waiting for it keeps the next sample apart.
    let _ = socket.close(None).await;
    let parsed: Snapshot = serde_json::from_str(&text)
        .map_err(|e| format!("the snapshot is not what docs/protocol.md describes: {e}"))?;
    let devices: BTreeSet<&str> = parsed
        .positions
        .iter()
        .map(|p| p.device_id.as_str())
        .collect();
    let trail_points: usize = parsed
        .positions
        .iter()
        .filter_map(|p| p.trail.as_ref())
        .map(Vec::len)
        .sum();
    Ok(Sample {
        ms: round(ms),
        bytes: text.len(),
        devices: devices.len(),
        points: parsed.positions.len() + trail_points,
        with_trail: parsed
            .positions
            .iter()
            .filter(|p| p.trail.is_some())
            .count(),
    })
}

/// The text of the first `snapshot` message; an `error` or a close before it fails.
async fn snapshot(socket: &mut Socket) -> Result<Utf8Bytes, String> {
    while let Some(frame) = socket.next().await {
        match frame.map_err(|e| format!("reading the socket failed: {e}"))? {
            Message::Text(text) => match kind(&text) {
                Some("snapshot") => return Ok(text),
                Some("error") => {
                    return Err(format!("the server answered {}", excerpt(&text)));
                }
                _ => {}
            },
            Message::Close(close) => {
                return Err(format!("the server closed the connection: {close:?}"));
            }
            _ => {}
        }
    }
    Err("the connection ended before the snapshot".into())
}

/// Milliseconds to a tenth.
fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}
