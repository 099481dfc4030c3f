//! `fleet trackers`: the fleet as real Teltonika trackers talking codec 8E over TCP to a
//! gateway, with the imperfections real ones have (resends after a lost ACK, records
//! buffered while offline and uploaded late and newest first, records without a fix), and
//! the tracker's view of the gateway: ACK latency, packets left unacknowledged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use processor_core::teltonika::tcp_frame::{encode_identity, encode_packet};
use processor_core::teltonika::{encode_data, AvlRecord, Codec, IoValue};

use super::device::{Area, Device, Fix};
use super::fleet::{device_id, Imperfections};
use super::rng::Rng;

/// What each tracker does between packets.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// A packet every `min..=max` ms (uniform), of 1 to `max_records` records.
    Every { min_ms: u64, max_ms: u64 },
    /// The next packet as soon as the last one is acknowledged (throughput).
    Flood,
    /// Handshake, then nothing (memory per idle connection).
    Idle,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub gateway: SocketAddr,
    pub pace: Pace,
    pub max_records: u8,
    pub imperfections: Imperfections,
    /// Connections opened per second while the fleet starts (a burst of thousands would
    /// overflow the listener's backlog).
    pub connects_per_s: u64,
}

#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    packets: AtomicU64,
    acked: AtomicU64,
    records: AtomicU64,
    resends: AtomicU64,
    reconnects: AtomicU64,
    unacked_at_end: AtomicU64,
    ack_us: Mutex<Option<Histogram<u64>>>,
}

const ACK_PATIENCE: Duration = Duration::from_secs(30);

fn record(fix: &Fix, no_fix: bool) -> AvlRecord {
    AvlRecord {
        timestamp_ms: fix.ts.max(0) as u64,
        priority: 0,
        longitude: (fix.lon * 1e7).round() as i32,
        latitude: (fix.lat * 1e7).round() as i32,
        altitude: fix.altitude.round() as i16,
        angle: fix.angle.round() as u16 % 360,
        satellites: if no_fix { 0 } else { fix.satellites },
        speed: fix.speed.round() as u16,
        event_io_id: 0,
        generation_type: None,
        io: vec![
            (239, IoValue::Fixed { width: 1, value: 1 }),
            (21, IoValue::Fixed { width: 1, value: 4 }),
            (
                66,
                IoValue::Fixed {
                    width: 2,
                    value: 12_800,
                },
            ),
            (
                16,
                IoValue::Fixed {
                    width: 4,
                    value: fix.odometer_m,
                },
            ),
            (
                11,
                IoValue::Fixed {
                    width: 8,
                    value: 8_937_020_000_000_000_000,
                },
            ),
        ],
    }
}

/// Runs `devices` trackers until `stop`; prints one JSON line of what they saw.
pub async fn run(
    devices: usize,
    seed: u64,
    area: Area,
    plan: Plan,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let stats = Arc::new(Stats {
        ack_us: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).ok()),
        ..Stats::default()
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / plan.connects_per_s.max(1) as f64);
    for i in 0..devices {
        if *stop.borrow() {
            break;
        }
        let (stats, stop) = (stats.clone(), stop.clone());
        tasks.spawn(tracker(i, seed, area, plan, stats, stop));
        tokio::time::sleep(gap).await;
    }
    let _ = stop.wait_for(|s| *s).await;
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let (p50, p99, max) = match &*stats.ack_us.lock().map_err(|_| "stats lock poisoned")? {
        Some(h) if !h.is_empty() => (
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.max() as f64 / 1e3,
        ),
        _ => (0.0, 0.0, 0.0),
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"trackers\",\"trackers\":{devices},\"connected\":{},\"seconds\":{secs:.1},\"packets\":{},\"acked\":{},\"records_acked\":{},\"records_per_s\":{:.0},\"resends\":{},\"reconnects\":{},\"unacked_at_end\":{},\"ack_p50_ms\":{p50:.2},\"ack_p99_ms\":{p99:.2},\"ack_max_ms\":{max:.2}}}",
        load(&stats.connected),
        load(&stats.packets),
        load(&stats.acked),
        load(&stats.records),
        load(&stats.records) as f64 / secs,
        load(&stats.resends),
        load(&stats.reconnects),
        load(&stats.unacked_at_end),
    );
    Ok(())
}

struct Link {
    stream: TcpStream,
}

async fn connect(plan: &Plan, imei: &str, stop: &mut watch::Receiver<bool>) -> Option<Link> {
    let mut wait = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return None;
        }
        if let Ok(mut stream) = TcpStream::connect(plan.gateway).await {
            let _ = stream.set_nodelay(true);
            let mut answer = [0u8; 1];
            if stream.write_all(&encode_identity(imei)).await.is_ok()
                && stream.read_exact(&mut answer).await.is_ok()
                && answer[0] == 1
            {
                return Some(Link { stream });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Sends `packet` and waits for its ACK; `None` when the connection failed first.
async fn exchange(link: &mut Link, packet: &[u8]) -> Option<Duration> {
    link.stream.write_all(packet).await.ok()?;
    let sent = Instant::now();
    let mut ack = [0u8; 4];
    tokio::time::timeout(ACK_PATIENCE, link.stream.read_exact(&mut ack))
        .await
        .ok()?
        .ok()?;
    Some(sent.elapsed())
}

async fn tracker(
    i: usize,
    seed: u64,
    area: Area,
    plan: Plan,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let imei = device_id(i);
    let now = super::now_ms();
    let mut device = Device::new(imei.clone(), area, now, 1_000, &mut rng);
    let Some(mut link) = connect(&plan, &imei, &mut stop).await else {
        return;
    };
    stats.connected.fetch_add(1, Ordering::Relaxed);
    if let Pace::Flood = plan.pace {
        flood(&plan, &imei, device, area, &mut rng, link, &stats, stop).await;
        return;
    }
    let mut offline: Vec<AvlRecord> = Vec::new();
    loop {
        let pause = match plan.pace {
            Pace::Idle => {
                let _ = stop.wait_for(|s| *s).await;
                return;
            }
            Pace::Flood => Duration::ZERO,
            Pace::Every { min_ms, max_ms } => {
                Duration::from_millis(min_ms + rng.next_u64() % (max_ms - min_ms + 1))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let n = 1 + (rng.next_u64() % u64::from(plan.max_records.max(1))) as usize;
        let now = super::now_ms();
        let step = (pause.as_millis() as i64 / n as i64).max(1);
        let mut records: Vec<AvlRecord> = (0..n)
            .map(|j| {
                let mut fix = device.step(area, &mut rng);
                fix.ts = now - (n - 1 - j) as i64 * step;
                record(&fix, rng.chance(plan.imperfections.no_fix))
            })
            .collect();
        // Out of coverage: keep the records; they go out later, newest first, as
        // Teltonika devices upload their buffer.
        if offline.len() < 40 && rng.chance(plan.imperfections.late) {
            offline.extend(records);
            continue;
        }
        if !offline.is_empty() {
            offline.reverse();
            records.extend(offline.drain(..).take(200 - n));
        }
        let Ok(data) = encode_data(Codec::Codec8Extended, &records[..records.len().min(255)])
        else {
            continue;
        };
        let packet = encode_packet(&data);
        stats.packets.fetch_add(1, Ordering::Relaxed);
        // A lost ACK: the tracker gives up on this connection and resends on a new one.
        if rng.chance(plan.imperfections.duplicate) {
            let _ = link.stream.write_all(&packet).await;
            stats.resends.fetch_add(1, Ordering::Relaxed);
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
            let Some(fresh) = connect(&plan, &imei, &mut stop).await else {
                return;
            };
            link = fresh;
        }
        loop {
            match exchange(&mut link, &packet).await {
                Some(waited) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    stats
                        .records
                        .fetch_add(records.len().min(255) as u64, Ordering::Relaxed);
                    if let Ok(mut h) = stats.ack_us.lock() {
                        if let Some(h) = h.as_mut() {
                            let _ = h.record(waited.as_micros().max(1) as u64);
                        }
                    }
                    break;
                }
                None => {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    stats.resends.fetch_add(1, Ordering::Relaxed);
                    let Some(fresh) = connect(&plan, &imei, &mut stop).await else {
                        stats.unacked_at_end.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    link = fresh;
                }
            }
        }
    }
}

/// Packets a flooding tracker cycles through: encoded once, so that the load generator's own
/// work per packet is a write and a read, and the gateway is what is measured.
const FLOOD_PACKETS: usize = 16;

/// Sends packets back to back, each as soon as the last is acknowledged, until `stop`.
#[allow(clippy::too_many_arguments)]
async fn flood(
    plan: &Plan,
    imei: &str,
    mut device: Device,
    area: Area,
    rng: &mut Rng,
    mut link: Link,
    stats: &Stats,
    mut stop: watch::Receiver<bool>,
) {
    let packets: Vec<(Vec<u8>, u64)> = (0..FLOOD_PACKETS)
        .filter_map(|_| {
            let n = 1 + (rng.next_u64() % u64::from(plan.max_records.max(1))) as usize;
            let records: Vec<AvlRecord> = (0..n)
                .map(|_| record(&device.step(area, rng), false))
                .collect();
            let data = encode_data(Codec::Codec8Extended, &records).ok()?;
            Some((encode_packet(&data), n as u64))
        })
        .collect();
    for (packet, records) in packets.iter().cycle() {
        if *stop.borrow() {
            return;
        }
        stats.packets.fetch_add(1, Ordering::Relaxed);
        match exchange(&mut link, packet).await {
            Some(waited) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
                stats.records.fetch_add(*records, Ordering::Relaxed);
                if let Ok(mut h) = stats.ack_us.lock() {
                    if let Some(h) = h.as_mut() {
                        let _ = h.record(waited.as_micros().max(1) as u64);
                    }
                }
            }
            None => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                stats.resends.fetch_add(1, Ordering::Relaxed);
                let Some(fresh) = connect(plan, imei, &mut stop).await else {
                    stats.unacked_at_end.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                link = fresh;
            }
        }
    }
}
