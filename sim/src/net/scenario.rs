//! One seeded run of the network layer: two processors running the shell's durable loop,
//! the Redis and Postgres stand-ins on their own hosts, a gateway appending traffic, and
//! faults on the wire and the hosts: partitions from Postgres and from Redis (healed), a
//! processor crashed mid-batch and bounced, another crashed for good (its entries must be
//! claimed), and a processor whose clock is off.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use processor_core::durable::DurableConfig;
use processor_core::faulty::FaultyThresholds;
use processor_shell::durable::{self, DurableContext};
use processor_shell::metrics::Metrics;
use processor_shell::readiness::Readiness;

use super::ports::{NetStore, NetStream, SimClock};
use super::schedule::{world, Fault, FaultSchedule};
use super::servers::Servers;
use crate::rng::SimRng;
use crate::store::PositionKey;
use crate::traffic::{Expected, Traffic, TrafficMix};

/// Simulated time a run may take before it counts as stuck.
const BUDGET: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct NetReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub faults: Vec<String>,
    pub trace_hash: u64,
    pub entries: usize,
    pub stored: usize,
    pub dead_lettered: usize,
    pub sim_ms: u64,
}

impl NetReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

pub(super) fn core_config() -> DurableConfig {
    DurableConfig {
        batch_size: 16,
        max_in_flight: 2,
        max_deliveries: 5,
        claim_idle_ms: 2_000,
        claim_interval_ms: 1_000,
        retry_min_ms: 50,
        retry_max_ms: 1_000,
        faulty: FaultyThresholds::default(),
    }
}

fn plan(rng: &mut SimRng) -> Vec<(u64, Fault)> {
    let mut at = |lo: u64, hi: u64| rng.range(lo, hi);
    let mut faults = Vec::new();
    let (pg_cut, pg_len) = (at(1_000, 8_000), at(500, 6_000));
    faults.push((pg_cut, Fault::Partition("p1", "postgres")));
    faults.push((pg_cut + pg_len, Fault::Repair("p1", "postgres")));
    let (redis_cut, redis_len) = (at(2_000, 10_000), at(500, 6_000));
    faults.push((redis_cut, Fault::Partition("p2", "redis")));
    faults.push((redis_cut + redis_len, Fault::Repair("p2", "redis")));
    let (crash, down) = (at(3_000, 15_000), at(100, 5_000));
    faults.push((crash, Fault::Crash("p1")));
    faults.push((crash + down, Fault::Bounce("p1")));
    if rng.chance(0.5) {
        faults.push((rng.range(12_000, 20_000), Fault::Crash("p2")));
    }
    faults
}

/// Runs one seed. Prints `SIM_SEED=<seed>` first.
pub fn run_net(seed: u64) -> NetReport {
    run_net_with(seed, false)
}

/// [`run_net`], with the planted defect of [`NetStream::ack_on_read`] or not.
pub fn run_net_with(seed: u64, ack_on_read: bool) -> NetReport {
    eprintln!("SIM_SEED={seed}");
    let mut rng = SimRng::new(seed);
    let servers = Servers::new();
    let mut sim = world(seed, BUDGET, &servers);
    let skew_ms = rng.range_i64(-120_000, 120_000);
    for (name, skew_ms) in [("p1", 0), ("p2", skew_ms)] {
        let s = servers.clone();
        sim.host(name, move || {
            processor(s.clone(), name, skew_ms, ack_on_read)
        });
    }

    // The gateway's traffic: drawn up front, appended over about 20 s.
    let traffic = Traffic::new(TrafficMix {
        marker_devices: 0,
        marker_p: 0.0,
        ..TrafficMix::default()
    });
    let entries: Vec<_> = (0..rng.range(150, 400))
        .map(|_| {
            let generated = traffic.generate(&mut rng);
            let key: Option<PositionKey> = match &generated.expected {
                Expected::Position(truth) => Some(truth.key()),
                Expected::DecodeError(_) => None,
            };
            (rng.range(0, 100), generated.payload, key)
        })
        .collect();
    let total = entries.len();
    let expected: BTreeSet<PositionKey> =
        entries.iter().filter_map(|(_, _, k)| k.clone()).collect();
    let s = servers.clone();
    sim.client("gateway", async move {
        for (gap_ms, payload, key) in entries {
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
            let now = turmoil::since_epoch().map_or(0, |d| d.as_millis() as u64);
            s.append(now, payload, key);
        }
        Ok(())
    });

    let mut faults = FaultSchedule::new(plan(&mut rng));
    let mut violations = Vec::new();
    let mut gateway_done = false;
    let progress = std::env::var_os("SIM_NET_PROGRESS").is_some();
    loop {
        let elapsed = sim.elapsed().as_millis() as u64;
        faults.apply_due(&mut sim, &servers);
        if progress && elapsed % 5_000 < 10 {
            let st = servers.lock();
            eprintln!(
                "{elapsed} ms: appended {}, undelivered {}, pending {}, stored {}",
                st.keys.len(),
                st.stream.undelivered(),
                st.stream.pending().len(),
                st.store.rows().len()
            );
        }
        match sim.step() {
            Ok(done) => gateway_done |= done,
            Err(e) => {
                violations.push(format!("a host failed: {e}"));
                break;
            }
        }
        if gateway_done && faults.done() && quiet(&servers, total, &expected) {
            break;
        }
        if sim.elapsed() > BUDGET {
            let (pending, undelivered) = {
                let state = servers.lock();
                (state.stream.pending().len(), state.stream.undelivered())
            };
            violations.push(format!(
                "not quiet after {} s of simulated time (pending {pending}, undelivered {undelivered})",
                BUDGET.as_secs()
            ));
            break;
        }
    }
    judge_durable(&servers, &expected, &mut violations);
    let trace_hash = servers.trace_hash();
    if let Some(path) = std::env::var_os("SIM_NET_TRACE") {
        // A replay's trace as text, to compare two runs line by line.
        let _ = std::fs::write(path, servers.trace_text().join("\n"));
    }
    let state = servers.lock();
    NetReport {
        seed,
        violations,
        faults: faults.applied,
        trace_hash,
        entries: total,
        stored: state.store.rows().len(),
        dead_lettered: state.dead_letters.len(),
        sim_ms: sim.elapsed().as_millis() as u64,
    }
}

/// A processor host: the shell's durable loop over the network ports, never asked to stop
/// (hosts are crashed instead).
pub(super) async fn processor(
    servers: Servers,
    name: &'static str,
    skew_ms: i64,
    ack_on_read: bool,
) -> turmoil::Result {
    let ctx = DurableContext {
        stream: NetStream {
            servers: servers.clone(),
            consumer: name.to_owned(),
            block_ms: 500,
            ack_on_read,
        },
        store: NetStore { servers },
        clock: SimClock { skew_ms },
        metrics: Arc::new(Metrics::new(name)),
        readiness: Arc::new(Readiness::default()),
        config: core_config(),
        grace: Duration::from_secs(5),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    durable::run(ctx, stop_rx).await;
    drop(stop_tx);
    Ok(())
}

/// Everything appended, delivered, settled and stored.
pub(super) fn quiet(servers: &Servers, total: usize, expected: &BTreeSet<PositionKey>) -> bool {
    let state = servers.lock();
    state.keys.len() == total
        && state.stream.undelivered() == 0
        && state.stream.pending().is_empty()
        && expected.iter().all(|k| state.store.rows().contains_key(k))
}

/// The durable invariants, once the run is quiet.
pub(super) fn judge_durable(
    servers: &Servers,
    expected: &BTreeSet<PositionKey>,
    violations: &mut Vec<String>,
) {
    let state = servers.lock();
    violations.extend(
        state
            .violations
            .iter()
            .map(|v| format!("at {} ms: {}", v.at_ms, v.what)),
    );
    if !state.stream.pending().is_empty() {
        violations.push(format!(
            "{} entries left pending",
            state.stream.pending().len()
        ));
    }
    let stored: BTreeSet<&PositionKey> = state.store.rows().keys().collect();
    let missing = expected.iter().filter(|k| !stored.contains(k)).count();
    if missing > 0 {
        violations.push(format!("{missing} distinct positions never stored"));
    }
    let extra = stored.iter().filter(|k| !expected.contains(**k)).count();
    if extra > 0 {
        violations.push(format!("{extra} stored rows no entry carried"));
    }
    let dead: BTreeSet<_> = state.dead_letters.iter().map(|d| d.source_id).collect();
    for (id, key) in &state.keys {
        match key {
            None if !dead.contains(id) => {
                violations.push(format!("undecodable {id} not dead-lettered"))
            }
            Some(_) if dead.contains(id) => violations.push(format!("storable {id} dead-lettered")),
            _ => {}
        }
    }
}
