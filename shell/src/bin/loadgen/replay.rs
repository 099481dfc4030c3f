//! `loadgen replay`: paced replays of an event's stored window, and whether they keep pace.
//!
//! `replays` replays of the same window at the same speed, `per_connection` of them on each
//! connection (the server allows `LIVE_REPLAY_MAX_PER_CONNECTION`, 2 by default), all asked
//! for at once. A replay keeps pace when its positions arrive when its clock says: the
//! time from its first position to its `replay_end` ("played") against the event time from
//! that position's fix time to `to`, divided by the speed ("expected"). `pace` is
//! expected / played: 1 keeps pace, 0.5 took twice as long. Per position, "late" is how
//! long after its due time it arrived, the due time counted from the first position
//! (received time + (fix time - first fix time) / speed).
//!
//! A replay that falls behind is not waited for forever: after `max_s` the clients stop
//! reading and report what arrived, a replay without its `replay_end` counted up to its
//! last position (played: first to last position; expected: their fix times' distance
//! over the speed), and `finished` says how many ended.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::frame::{excerpt, fix_ts, kind, topic};
use super::quantiles::Quantiles;
use super::socket::{self, Socket};

#[derive(Args)]
pub struct ReplayArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/live")]
    url: String,
    /// The event whose stored positions are replayed.
    #[arg(long)]
    event: Uuid,
    /// The window's start, epoch milliseconds: positions with from < ts <= to are replayed.
    #[arg(long)]
    from: i64,
    /// The window's end, epoch milliseconds, included.
    #[arg(long)]
    to: i64,
    /// Event time per real time (0.1 to 1000).
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Replays run at once.
    #[arg(long, default_value_t = 1)]
    replays: usize,
    /// Replays per connection.
    #[arg(long, default_value_t = 2)]
    per_connection: usize,
    /// Stop reading after this long and report what arrived (default: twice the window
    /// over the speed, plus 30 s).
    #[arg(long)]
    max_s: Option<u64>,
    /// Also print each replay's figures.
    #[arg(long)]
    each: bool,
}

/// One replay as its client saw it.
struct Run {
    id: String,
    asked: Instant,
    snapshot: Option<Instant>,
    /// When the first position arrived, and its fix time; the same of the last one.
    first: Option<(Instant, i64)>,
    last: Option<(Instant, i64)>,
    positions: u64,
    /// Milliseconds after its due time each position arrived.
    late_ms: Histogram<u64>,
    ended: Option<Instant>,
}

impl Run {
    fn new(id: String, asked: Instant) -> Result<Run, String> {
        Ok(Run {
            id,
            asked,
            snapshot: None,
            first: None,
            last: None,
            positions: 0,
            late_ms: Histogram::new(3).map_err(|e| format!("histogram: {e}"))?,
            ended: None,
        })
    }

    fn position(&mut self, ts: i64, now: Instant, speed: f64) {
        self.positions += 1;
        self.last = Some((now, ts));
        let (first_at, first_ts) = *self.first.get_or_insert((now, ts));
        let due_ms = (ts - first_ts) as f64 / speed;
        let late = now.duration_since(first_at).as_secs_f64() * 1_000.0 - due_ms;
        let _ = self.late_ms.record(late.max(0.0) as u64);
    }

    /// (played, expected) seconds: to `replay_end`, or to the last position when it did
    /// not end.
    fn played_and_expected(&self, to: i64, speed: f64) -> (f64, f64) {
        let (Some((first_at, first_ts)), Some((last_at, last_ts))) = (self.first, self.last) else {
            return (0.0, 0.0);
        };
        let (end_at, end_ts) = match self.ended {
            Some(at) => (at, to),
            None => (last_at, last_ts),
        };
        (
            end_at.duration_since(first_at).as_secs_f64(),
            (end_ts - first_ts) as f64 / 1_000.0 / speed,
        )
    }
}

pub async fn run(args: ReplayArgs) -> Result<(), String> {
    if !(0.1..=1_000.0).contains(&args.speed) {
        return Err("--speed must be between 0.1 and 1000".into());
    }
    if args.from >= args.to {
        return Err("--from must be before --to".into());
    }
    if args.replays == 0 || args.per_connection == 0 {
        return Err("--replays and --per-connection must be at least 1".into());
    }
    let window_s = (args.to - args.from) as f64 / 1_000.0;
    let max = Duration::from_secs(
        args.max_s
            .unwrap_or((2.0 * window_s / args.speed) as u64 + 30),
    );
    let deadline = tokio::time::Instant::now() + max;
    let mut connections = Vec::new();
    let ids: Vec<String> = (0..args.replays).map(|i| format!("r{i}")).collect();
    for (c, chunk) in ids.chunks(args.per_connection).enumerate() {
        let socket = socket::open(&args.url)
            .await
            .map_err(|e| format!("connection {c}: {e}"))?;
        let requests: Vec<(String, String)> = chunk
            .iter()
            .map(|id| {
                let request = json!({"type": "replay", "id": id, "event": args.event.to_string(),
                                     "from": args.from, "to": args.to, "speed": args.speed});
                (id.clone(), request.to_string())
            })
            .collect();
        let speed = args.speed;
        connections.push(tokio::spawn(async move {
            connection(socket, requests, speed, deadline)
                .await
                .map_err(|e| format!("connection {c}: {e}"))
        }));
    }
    let mut runs = Vec::with_capacity(args.replays);
    for task in connections {
        let done = task
            .await
            .map_err(|e| format!("a connection's task failed: {e}"))??;
        runs.extend(done);
    }
    // r0, r1, ... r10: by length, then by text.
    runs.sort_by(|a, b| (a.id.len(), &a.id).cmp(&(b.id.len(), &b.id)));
    report(&args, window_s, &runs)
}

/// Sends the replay requests (id, message), then reads until every one of them has ended
/// or the deadline passed.
async fn connection(
    mut socket: Socket,
    requests: Vec<(String, String)>,
    speed: f64,
    deadline: tokio::time::Instant,
) -> Result<Vec<Run>, String> {
    let mut runs: HashMap<String, Run> = HashMap::new();
    for (id, request) in requests {
        let asked = Instant::now();
        socket
            .send(Message::Text(request.into()))
            .await
            .map_err(|e| format!("cannot send the replay request: {e}"))?;
        runs.insert(format!("replay:{id}"), Run::new(id, asked)?);
    }
    let mut open = runs.len();
    while open > 0 {
        let Ok(frame) = tokio::time::timeout_at(deadline, socket.next()).await else {
            break;
        };
        let Some(frame) = frame else {
            return Err(format!("the connection ended with {open} replays running"));
        };
        let text = match frame.map_err(|e| format!("reading the socket failed: {e}"))? {
            Message::Text(text) => text,
            Message::Close(close) => {
                return Err(format!(
                    "the server closed the connection with {open} replays running: {close:?}"
                ));
            }
            _ => continue,
        };
        let now = Instant::now();
        let frame_kind = kind(&text);
        if frame_kind == Some("error") {
            return Err(format!("the server answered {}", excerpt(&text)));
        }
        let Some(run) = topic(&text).and_then(|t| runs.get_mut(t)) else {
            continue;
        };
        match frame_kind {
            Some("position") => {
                let ts = fix_ts(&text)
                    .ok_or_else(|| format!("a position without ts: {}", excerpt(&text)))?;
                run.position(ts, now, speed);
            }
            Some("snapshot") => run.snapshot = Some(now),
            Some("replay_end") if run.ended.is_none() => {
                run.ended = Some(now);
                open -= 1;
            }
            _ => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
    Ok(runs.into_values().collect())
}

/// What is printed, in this order.
#[derive(Serialize)]
struct Report {
    mode: &'static str,
    replays: usize,
    /// Replays that reached `replay_end` before `max_s`.
    finished: usize,
    connections: usize,
    speed: f64,
    window_s: f64,
    expected_s: f64,
    played_s_max: f64,
    pace_min: f64,
    pace_p50: f64,
    positions: u64,
    positions_per_replay_min: u64,
    /// All replays' positions over the time from the first one's first position to the
    /// last one's last.
    positions_per_s: f64,
    late_p50_ms: u64,
    late_p99_ms: u64,
    late_max_ms: u64,
    snapshot_ms_max: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    each: Option<Vec<Each>>,
}

/// One replay's figures.
#[derive(Serialize)]
struct Each {
    id: String,
    finished: bool,
    positions: u64,
    snapshot_ms: f64,
    played_s: f64,
    expected_s: f64,
    pace: f64,
    late_max_ms: u64,
}

fn report(args: &ReplayArgs, window_s: f64, runs: &[Run]) -> Result<(), String> {
    let mut late = Histogram::<u64>::new(3).map_err(|e| format!("histogram: {e}"))?;
    let mut each = Vec::with_capacity(runs.len());
    let (mut first_at, mut last_at): (Option<Instant>, Option<Instant>) = (None, None);
    for run in runs {
        late.add(&run.late_ms)
            .map_err(|e| format!("histogram: {e}"))?;
        if let (Some((a, _)), Some((b, _))) = (run.first, run.last) {
            first_at = Some(first_at.map_or(a, |t| t.min(a)));
            last_at = Some(last_at.map_or(b, |t| t.max(b)));
        }
        let (played_s, expected_s) = run.played_and_expected(args.to, args.speed);
        each.push(Each {
            id: run.id.clone(),
            finished: run.ended.is_some(),
            positions: run.positions,
            snapshot_ms: round(
                run.snapshot
                    .map(|t| t.duration_since(run.asked).as_secs_f64() * 1_000.0)
                    .unwrap_or(0.0),
            ),
            played_s: round(played_s),
            expected_s: round(expected_s),
            // A replay without positions (an empty window) has nothing to keep pace with.
            pace: if played_s > 0.0 {
                round3(expected_s / played_s)
            } else {
                1.0
            },
            late_max_ms: run.late_ms.max(),
        });
    }
    let paces = Quantiles::new(each.iter().map(|e| e.pace).collect());
    let positions: u64 = each.iter().map(|e| e.positions).sum();
    let span_s = match (first_at, last_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let report = Report {
        mode: "replay",
        replays: runs.len(),
        finished: each.iter().filter(|e| e.finished).count(),
        connections: runs.len().div_ceil(args.per_connection),
        speed: args.speed,
        window_s: round(window_s),
        expected_s: round(window_s / args.speed),
        played_s_max: Quantiles::new(each.iter().map(|e| e.played_s).collect()).max(),
        pace_min: paces.min(),
        pace_p50: paces.at(0.5),
        positions,
        positions_per_replay_min: each.iter().map(|e| e.positions).min().unwrap_or(0),
        positions_per_s: if span_s > 0.0 {
            (positions as f64 / span_s).round()
        } else {
            0.0
        },
        late_p50_ms: late.value_at_quantile(0.5),
        late_p99_ms: late.value_at_quantile(0.99),
        late_max_ms: late.max(),
        snapshot_ms_max: Quantiles::new(each.iter().map(|e| e.snapshot_ms).collect()).max(),
        each: args.each.then_some(each),
    };
    let line = serde_json::to_string(&report).map_err(|e| format!("cannot print: {e}"))?;
    println!("{line}");
    Ok(())
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1_000.0).round() / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_of_a_replay_that_ended_and_of_one_cut_off() {
        let start = Instant::now();
        let mut run = Run::new("r0".into(), start).unwrap();
        // Speed 10: 10 s of event time in 1 s.
        run.position(1_000, start, 10.0);
        run.position(11_000, start + Duration::from_secs(2), 10.0);
        assert_eq!(run.played_and_expected(21_000, 10.0), (2.0, 1.0));
        assert_eq!(run.late_ms.max() / 100, 10); // 1 s late, to the histogram's precision
        run.ended = Some(start + Duration::from_secs(4));
        assert_eq!(run.played_and_expected(21_000, 10.0), (4.0, 2.0));
    }
}
