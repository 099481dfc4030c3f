//! Trackers, gateways, Redis and a processor over simulated TCP: the shell's own gateway
//! (`serve_tcp`, the core's session) on two gateway hosts, trackers on client hosts that
//! resend every packet they saw no ACK for, and the durable loop storing what reaches the
//! stream, while a gateway's link to Redis is cut or slowed, Redis restarts and gateways
//! crash.
//!
//! Invariants: every record of every acknowledged packet is on the stream, and every
//! record of every packet ends in Postgres exactly once (each packet is acknowledged in the
//! end, since trackers resend; the resends' duplicates are harmless).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use turmoil::net::{TcpListener, TcpStream};

use processor_core::teltonika::session::SessionConfig;
use processor_core::teltonika::tcp_frame::{encode_identity, encode_packet};
use processor_core::teltonika::{encode_data, AllowList, AvlRecord, Codec, IoValue, PacketEntries};
use processor_shell::clock::MonoClock;
use processor_shell::edge::slots::ConnectionSlots;
use processor_shell::gateway::appender::{run_pipelines, AppendError, Pipeline, RedisAppender};
use processor_shell::gateway::connection::Gateway;
use processor_shell::gateway::metrics::GatewayMetrics;
use processor_shell::gateway::tcp::serve_tcp;

use super::live_ports::SimListener;
use super::ports::{call, SimClock};
use super::scenario::{judge_durable, processor};
use super::schedule::{world, Fault, FaultSchedule};
use super::servers::{Request, Servers, REDIS_PORT};
use crate::rng::SimRng;
use crate::store::PositionKey;
use crate::traffic::T0;

const GATEWAY_PORT: u16 = 5027;
const GATEWAYS: [&str; 2] = ["g1", "g2"];
const TRACKERS: usize = 6;
/// Simulated time a run may take before it counts as stuck.
const BUDGET: Duration = Duration::from_secs(240);

const SESSION: SessionConfig = SessionConfig {
    max_packet_bytes: 4096,
    max_bad_packets: 3,
    idle_timeout_ms: 60_000,
    ack_timeout_ms: 3_000,
};

#[derive(Debug, Clone)]
pub struct GatewayReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub faults: Vec<String>,
    pub trace_hash: u64,
    pub packets: usize,
    pub records: usize,
    /// Packets sent again after no ACK came.
    pub resends: usize,
    /// Entries on the stream (duplicates of resent packets included).
    pub entries: usize,
    pub sim_ms: u64,
}

impl GatewayReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A defect planted in the gateway's port, to show the judging has teeth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayDefect {
    #[default]
    None,
    /// The pipeline reports success as soon as it is sent, before Redis confirmed it.
    AckBeforeConfirmed,
}

/// The telemetry stream on the "redis" host, as the gateway's pipeline port.
struct NetPipeline {
    servers: Servers,
    defect: GatewayDefect,
}

fn key_of(payload: &str) -> Option<PositionKey> {
    processor_core::decode_position(payload.as_bytes())
        .ok()
        .map(|p| (p.device_id, p.ts.as_i64()))
}

impl Pipeline for NetPipeline {
    async fn xadd_all(&self, packets: &[PacketEntries]) -> Result<(), AppendError> {
        let body: Vec<_> = packets
            .iter()
            .flat_map(|e| e.payloads.iter())
            .map(|p| (Bytes::from(p.clone()), key_of(p)))
            .collect();
        let servers = self.servers.clone();
        let send = async move {
            call(
                &servers,
                "redis",
                REDIS_PORT,
                Request::Append(body),
                Duration::ZERO,
            )
            .await
        };
        match self.defect {
            GatewayDefect::AckBeforeConfirmed => {
                tokio::spawn(send);
                Ok(())
            }
            GatewayDefect::None => send.await.map(|_| ()).map_err(AppendError),
        }
    }
}

/// A gateway host: the shell's TCP listener loop, never asked to stop (hosts are crashed).
async fn gateway_host(servers: Servers, defect: GatewayDefect) -> turmoil::Result {
    let listener = SimListener(TcpListener::bind(("0.0.0.0", GATEWAY_PORT)).await?);
    let (_allow_tx, allow) = watch::channel(Arc::new(AllowList::Everyone));
    // The service's own queue and pipelines (packets that wait together go out together),
    // in front of the Redis host.
    let (appender, queue) = RedisAppender::new();
    tokio::spawn(run_pipelines(NetPipeline { servers, defect }, queue));
    let gateway = Arc::new(Gateway {
        session: SESSION,
        appender,
        allow,
        metrics: Arc::new(GatewayMetrics::new()),
        mono: MonoClock::start(),
        wall: SimClock { skew_ms: 0 },
    });
    let (_stop_tx, stop) = watch::channel(false);
    serve_tcp(listener, ConnectionSlots::new(100), gateway, stop).await;
    Ok(())
}

struct Packet {
    bytes: Vec<u8>,
    keys: Vec<PositionKey>,
    gap_ms: u64,
}

/// What the trackers saw, shared with the judge.
#[derive(Default)]
struct Seen {
    acked: BTreeSet<PositionKey>,
    resends: usize,
    finished: usize,
}

fn packets_of(tracker: usize, rng: &mut SimRng) -> (String, Vec<Packet>) {
    let imei = format!("{}", 356_307_042_440_000u64 + tracker as u64);
    let mut ts = T0 - 60_000;
    let packets = (0..rng.range(10, 25))
        .map(|_| {
            let records: Vec<AvlRecord> = (0..rng.range(1, 5))
                .map(|i| {
                    ts += 1_000;
                    AvlRecord {
                        timestamp_ms: ts,
                        priority: 0,
                        longitude: 252_797_000 + i as i32 * 100,
                        latitude: 546_872_000 + tracker as i32 * 100,
                        altitude: 120,
                        angle: 90,
                        satellites: 9,
                        speed: 30,
                        event_io_id: 0,
                        generation_type: None,
                        io: vec![(239, IoValue::Fixed { width: 1, value: 1 })],
                    }
                })
                .collect();
            let keys = records
                .iter()
                .map(|r| (imei.clone(), r.timestamp_ms as i64))
                .collect();
            let bytes =
                encode_packet(&encode_data(Codec::Codec8Extended, &records).unwrap_or_default());
            Packet {
                bytes,
                keys,
                gap_ms: rng.range(50, 600),
            }
        })
        .collect();
    (imei, packets)
}

/// Connects to a gateway and hand-shakes; `None` when that gateway is not there.
async fn connect(gateway: &str, imei: &str) -> Option<TcpStream> {
    let attempt = async {
        let mut stream = TcpStream::connect((gateway, GATEWAY_PORT)).await.ok()?;
        stream.write_all(&encode_identity(imei)).await.ok()?;
        (stream.read_u8().await.ok()? == 1).then_some(stream)
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
}

/// A tracker: sends its packets in order, each until it is acknowledged, switching
/// gateways when one does not answer.
async fn tracker(
    index: usize,
    imei: String,
    packets: Vec<Packet>,
    seen: Arc<Mutex<Seen>>,
) -> turmoil::Result {
    let mut gateway = index % GATEWAYS.len();
    let mut link: Option<TcpStream> = None;
    for packet in packets {
        tokio::time::sleep(Duration::from_millis(packet.gap_ms)).await;
        let mut tries = 0;
        loop {
            if link.is_none() {
                link = connect(GATEWAYS[gateway], &imei).await;
            }
            let acked = match link.as_mut() {
                Some(stream) => {
                    let exchange = async {
                        stream.write_all(&packet.bytes).await.ok()?;
                        stream.read_u32().await.ok()
                    };
                    tokio::time::timeout(Duration::from_secs(5), exchange)
                        .await
                        .ok()
                        .flatten()
                }
                None => None,
            };
            if acked == Some(packet.keys.len() as u32) {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .acked
                    .extend(packet.keys.iter().cloned());
                break;
            }
            // No ACK: the tracker gives up on this connection and resends, as Teltonika
            // devices do; another gateway may be up.
            link = None;
            tries += 1;
            seen.lock().unwrap_or_else(|e| e.into_inner()).resends += 1;
            gateway = (gateway + 1) % GATEWAYS.len();
            tokio::time::sleep(Duration::from_millis(200 * tries.min(10))).await;
        }
    }
    seen.lock().unwrap_or_else(|e| e.into_inner()).finished += 1;
    Ok(())
}

fn plan(rng: &mut SimRng) -> Vec<(u64, Fault)> {
    let mut faults = Vec::new();
    let (cut, len) = (rng.range(1_000, 8_000), rng.range(500, 5_000));
    faults.push((cut, Fault::Partition("g1", "redis")));
    faults.push((cut + len, Fault::Repair("g1", "redis")));
    let (hold, len) = (rng.range(1_000, 10_000), rng.range(300, 5_000));
    faults.push((hold, Fault::Hold("g2", "redis")));
    faults.push((hold + len, Fault::Release("g2", "redis")));
    let (crash, down) = (rng.range(3_000, 12_000), rng.range(100, 3_000));
    faults.push((crash, Fault::Crash("g1")));
    faults.push((crash + down, Fault::Bounce("g1")));
    // Redis restarts (its data, like an AOF-backed Redis, survives).
    let (restart, down) = (rng.range(2_000, 14_000), rng.range(100, 2_000));
    faults.push((restart, Fault::Crash("redis")));
    faults.push((restart + down, Fault::Bounce("redis")));
    if rng.chance(0.5) {
        let (crash, down) = (rng.range(5_000, 15_000), rng.range(100, 3_000));
        faults.push((crash, Fault::Crash("g2")));
        faults.push((crash + down, Fault::Bounce("g2")));
    }
    faults
}

/// Runs one seed. Prints `SIM_SEED=<seed>` first.
pub fn run_gateway(seed: u64) -> GatewayReport {
    run_gateway_with(seed, GatewayDefect::None)
}

pub fn run_gateway_with(seed: u64, defect: GatewayDefect) -> GatewayReport {
    eprintln!("SIM_SEED={seed}");
    let mut rng = SimRng::new(seed);
    let servers = Servers::new();
    let mut sim = world(seed, BUDGET, &servers);
    for name in GATEWAYS {
        let s = servers.clone();
        sim.host(name, move || gateway_host(s.clone(), defect));
    }
    let s = servers.clone();
    sim.host("p1", move || processor(s.clone(), "p1", 0, false));

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut expected = BTreeSet::new();
    let (mut packet_count, mut record_count) = (0, 0);
    for index in 0..TRACKERS {
        let (imei, packets) = packets_of(index, &mut rng);
        packet_count += packets.len();
        for p in &packets {
            record_count += p.keys.len();
            expected.extend(p.keys.iter().cloned());
        }
        let seen = seen.clone();
        sim.client(format!("t{index}"), tracker(index, imei, packets, seen));
    }

    let mut faults = FaultSchedule::new(plan(&mut rng));
    let mut violations = Vec::new();
    loop {
        faults.apply_due(&mut sim, &servers);
        if let Err(e) = sim.step() {
            violations.push(format!("a host failed: {e}"));
            break;
        }
        let trackers_done = seen.lock().unwrap_or_else(|e| e.into_inner()).finished == TRACKERS;
        if trackers_done && faults.done() && settled(&servers, &expected) {
            break;
        }
        // With the planted defect an acked record may never arrive: stop once the trackers
        // are done and the stream has gone quiet.
        if trackers_done && faults.done() && defect != GatewayDefect::None && drained(&servers) {
            break;
        }
        if sim.elapsed() > BUDGET {
            let done = seen.lock().unwrap_or_else(|e| e.into_inner()).finished;
            violations.push(format!(
                "not settled after {} s of simulated time ({done} of {TRACKERS} trackers done)",
                BUDGET.as_secs()
            ));
            break;
        }
    }
    let acked = seen.lock().unwrap_or_else(|e| e.into_inner()).acked.clone();
    {
        let state = servers.lock();
        let on_stream: BTreeSet<&PositionKey> = state.keys.values().flatten().collect();
        let lost = acked.iter().filter(|k| !on_stream.contains(k)).count();
        if lost > 0 {
            violations.push(format!(
                "{lost} records of acknowledged packets are not on the stream"
            ));
        }
    }
    judge_durable(&servers, &expected, &mut violations);
    let trace_hash = servers.trace_hash();
    let resends = seen.lock().unwrap_or_else(|e| e.into_inner()).resends;
    let state = servers.lock();
    GatewayReport {
        seed,
        violations,
        faults: faults.applied,
        trace_hash,
        packets: packet_count,
        records: record_count,
        resends,
        entries: state.keys.len(),
        sim_ms: sim.elapsed().as_millis() as u64,
    }
}

/// Everything on the stream delivered and settled, and every record stored.
fn settled(servers: &Servers, expected: &BTreeSet<PositionKey>) -> bool {
    let state = servers.lock();
    drained_state(&state) && expected.iter().all(|k| state.store.rows().contains_key(k))
}

fn drained(servers: &Servers) -> bool {
    drained_state(&servers.lock())
}

fn drained_state(state: &super::servers::State) -> bool {
    state.stream.undelivered() == 0 && state.stream.pending().is_empty()
}
