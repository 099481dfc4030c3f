//! One seeded run of the whole processor over the network: two instances (durable loop and
//! live path) on turmoil hosts, the Redis and Postgres stand-ins on theirs, a gateway
//! appending positions, and WebSocket clients on client hosts, fast and slow, connected to
//! either instance, one of them with a token for a private event. Faults: a partition from
//! Redis and one from Postgres (healed), an instance crashed and bounced, sometimes another
//! crashed for good, and a skewed clock; in about a third of the runs, `p1` is asked to stop
//! (as by SIGTERM) once it reaches Redis again. A device joins an event mid-run; another is
//! in no event.
//!
//! Judged on every run:
//! - every frame, as it arrives (the live model's checker): snapshot before any position of
//!   its topic, one snapshot per subscription, `ts` never backwards per (topic, device), no
//!   faulty fix, nothing of a topic not subscribed (the private event included);
//! - no error but the expected `forbidden` and the retryable look-up failures;
//! - while no fault is in effect, a fast client gets every fix newer than its device's
//!   last, of every topic it is live on, within [`CALM_LATENCY_BOUND_MS`] of its append,
//!   whatever the slow clients do;
//! - when the run goes quiet, every client holds the newest fix of every device of its
//!   topics (the device that joined included), on whichever instance it ended up;
//! - the orphan counter of an instance that never crashed equals the records of the device
//!   in no event;
//! - the group of an instance crashed for good is removed; no other is;
//! - a stopped instance went through the shutdown stages in the contract's order, closed its
//!   clients with 1001, destroyed its broadcast group before it left the durable group, left
//!   it with nothing pending, and read nothing after that;
//! - the durable invariants of [`super::scenario`]: nothing acked before it is safe, every
//!   distinct position stored, nothing left pending, undecodable entries dead-lettered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use processor_core::durable::DurableConfig;
use processor_core::faulty::FaultyThresholds;
use processor_core::live::{LiveConfig, Visibility, SERVICE_VISIBILITY_CACHE_MS};
use processor_shell::durable::ports::ConsumerRemoval;
use processor_shell::instance::Stage;
use processor_shell::metrics::Metrics;
use tokio::sync::watch;

use super::instance::{self, InstancePlan, NetLiveDefect, TOKEN_SECRET};
use super::scenario::judge_durable;
use super::schedule::{world, Fault, FaultSchedule, TICK};
use super::servers::{now_ms, Servers};
use super::ws_client::{self, ClientPlan, Observed, ObservedState};
use crate::rng::SimRng;
use crate::store::PositionKey;
use crate::traffic::T0;

/// Simulated time a run may take before it counts as stuck.
const BUDGET: Duration = Duration::from_secs(120);
/// The bound this layer states for "a slow client never delays a fast one": while no fault
/// is in effect, a fast client reads each position at most this long after its append.
pub const CALM_LATENCY_BOUND_MS: u64 = 500;
/// How long after a fault is repaired the system is given to settle before "calm" again.
const SETTLE_MS: u64 = 3_000;
const GROUP_TTL: Duration = Duration::from_secs(4);
const MAP_REFRESH: Duration = Duration::from_millis(500);
/// A device's first fix comes this long after it joined an event, so that every instance
/// that can reach Postgres has the new map by then (the orphan count stays exact).
const JOIN_MARGIN_MS: u64 = 2_000;

const PUBLIC_1: Uuid = Uuid::from_u128(0xe1);
const PUBLIC_2: Uuid = Uuid::from_u128(0xe2);
const PRIVATE: Uuid = Uuid::from_u128(0xe3);
const DEVICES: usize = 10;
/// In no event.
const ORPHAN: usize = 8;
/// Joins the first public event mid-run.
const JOINER: usize = 9;

fn device(i: usize) -> String {
    format!("3563070424410{i:02}")
}

fn topic(event: Uuid) -> String {
    format!("event:{event}")
}

/// The events each device starts in.
fn initial_members() -> BTreeMap<String, BTreeSet<Uuid>> {
    let mut map: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for (devices, event) in [(0..4, PUBLIC_1), (3..6, PUBLIC_2), (6..8, PRIVATE)] {
        for d in devices {
            map.entry(device(d)).or_default().insert(event);
        }
    }
    map
}

#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub faults: Vec<String>,
    pub trace_hash: u64,
    pub entries: usize,
    pub frames: u64,
    /// Most simulated ms a fast client waited for a position while no fault was in effect.
    pub calm_latency_max_ms: u64,
    pub conflated: u64,
    pub sessions: usize,
    /// When (ms into the run) `p1` was asked to stop, if it was.
    pub stopped_at: Option<u64>,
    pub sim_ms: u64,
}

impl FanoutReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

struct FaultPlan {
    faults: Vec<(u64, Fault)>,
    /// Windows of simulated time not calm: from a fault until it settled.
    unsettled: Vec<(u64, u64)>,
    crashed: BTreeSet<&'static str>,
    dead_for_good: Option<&'static str>,
    join_at: u64,
    /// When an instance could not reach Redis (cut off or down): (instance, from, to).
    redis_outages: Vec<(&'static str, u64, u64)>,
    /// When `p2` could not reach Postgres.
    postgres_outage: (u64, u64),
    /// When `p1` is asked to stop (as by SIGTERM), if it is.
    stop_at: Option<u64>,
}

fn plan_faults(seed: u64, rng: &mut SimRng) -> FaultPlan {
    let mut faults = Vec::new();
    let mut unsettled = Vec::new();
    let mut crashed = BTreeSet::new();
    let (redis_cut, redis_len) = (rng.range(3_000, 15_000), rng.range(300, 3_000));
    faults.push((redis_cut, Fault::Partition("p1", "redis")));
    faults.push((redis_cut + redis_len, Fault::Repair("p1", "redis")));
    unsettled.push((redis_cut, redis_cut + redis_len + SETTLE_MS));
    let mut redis_outages = vec![("p1", redis_cut, redis_cut + redis_len)];
    let (pg_cut, pg_len) = (rng.range(2_000, 6_000), rng.range(300, 3_000));
    faults.push((pg_cut, Fault::Partition("p2", "postgres")));
    faults.push((pg_cut + pg_len, Fault::Repair("p2", "postgres")));
    unsettled.push((pg_cut, pg_cut + pg_len + SETTLE_MS));
    let postgres_outage = (pg_cut, pg_cut + pg_len);
    // After the Postgres partition, so both instances load the new map in time.
    let join_at = rng.range(pg_cut + pg_len + 500, 14_000);
    if rng.chance(0.7) {
        let (crash, down) = (rng.range(4_000, 16_000), rng.range(100, 3_000));
        faults.push((crash, Fault::Crash("p1")));
        faults.push((crash + down, Fault::Bounce("p1")));
        unsettled.push((crash, crash + down + SETTLE_MS));
        redis_outages.push(("p1", crash, crash + down));
        crashed.insert("p1");
    }
    let mut dead_for_good = None;
    if rng.chance(0.3) {
        let crash = rng.range(12_000, 20_000);
        faults.push((crash, Fault::Crash("p2")));
        unsettled.push((crash, crash + SETTLE_MS * 2));
        crashed.insert("p2");
        dead_for_good = Some("p2");
    }
    // Drawn from a generator of its own, so that the other faults of a seed stay as they
    // were before stops were simulated. Never with p2 dead as well: nothing would be left.
    let mut stops = SimRng::new(seed ^ 0x5709_0000);
    // Once p1 reaches Redis again: a stop while cut off cannot settle, nor leave the group.
    let reachable_from = redis_outages
        .iter()
        .filter(|(i, ..)| *i == "p1")
        .map(|(_, _, to)| to + SETTLE_MS)
        .max()
        .unwrap_or(0);
    let stop_at = (dead_for_good.is_none() && stops.chance(0.35)).then(|| {
        let at = reachable_from + stops.range(0, 8_000);
        unsettled.push((at, at + SETTLE_MS * 2));
        at
    });
    FaultPlan {
        faults,
        unsettled,
        crashed,
        dead_for_good,
        join_at,
        redis_outages,
        postgres_outage,
        stop_at,
    }
}

fn live_config() -> LiveConfig {
    LiveConfig {
        // Small, so that a slow client's queue passes it within a few frames.
        conflate_threshold_bytes: 2 * 1024,
        backpressure_threshold_bytes: 256 * 1024,
        ping_interval_ms: 1_000,
        visibility_cache_ms: SERVICE_VISIBILITY_CACHE_MS,
        ..LiveConfig::default()
    }
}

fn durable_config() -> DurableConfig {
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

/// One drawn gateway step.
#[derive(Debug, Clone)]
enum Item {
    Fix {
        device: usize,
        back_ms: u64,
        /// 0: sound; 1: at (0, 0); 2: no satellites.
        fault: u8,
        duplicate: bool,
        late_ms: Option<u64>,
    },
    Garbage,
}

fn draw_traffic(rng: &mut SimRng) -> Vec<(u64, Item)> {
    (0..rng.range(200, 350))
        .map(|_| {
            let item = if rng.chance(0.03) {
                Item::Garbage
            } else {
                Item::Fix {
                    device: rng.index(DEVICES),
                    back_ms: rng.range(0, 800),
                    fault: match rng.below(40) {
                        0 => 1,
                        1 => 2,
                        _ => 0,
                    },
                    duplicate: rng.chance(0.1),
                    late_ms: rng.chance(0.05).then(|| rng.range(100, 2_000)),
                }
            };
            (rng.range(20, 120), item)
        })
        .collect()
}

struct Gateway {
    servers: Servers,
    observed: Observed,
    last_ts: BTreeMap<usize, i64>,
    late: Vec<(u64, usize, i64, u8)>,
}

impl Gateway {
    fn fix_payload(d: usize, ts: i64, fault: u8) -> Bytes {
        let seconds = (ts - T0 as i64) as f64 / 1_000.0;
        let (mut lat, mut lon) = (
            54.0 + d as f64 * 0.01 + seconds * 1e-5,
            25.0 + seconds * 1e-5,
        );
        if fault == 1 {
            (lat, lon) = (0.0, 0.0);
        }
        let satellites = if fault == 2 { 0 } else { 9 };
        Bytes::from(
            serde_json::json!({
                "device_id": device(d), "timestamp": ts, "latitude": lat, "longitude": lon,
                "satellites": satellites, "speed": 4.0, "angle": 90.0
            })
            .to_string(),
        )
    }

    /// A fresh fix time for `d`: never before its last one.
    fn next_ts(&mut self, d: usize, now: u64, back_ms: u64) -> i64 {
        let last = self.last_ts.get(&d).copied().unwrap_or(i64::MIN);
        let ts = (now as i64 - back_ms as i64).max(last.saturating_add(1));
        self.last_ts.insert(d, ts);
        ts
    }

    fn append_fix(&mut self, d: usize, ts: i64, fault: u8) {
        let now = now_ms();
        {
            let mut seen = self.observed.lock();
            let p = &mut seen.published;
            p.appended_at.entry((device(d), ts)).or_insert(now);
            if fault != 0 {
                p.faulty.insert((device(d), ts));
            } else {
                let newest = p.newest.entry(device(d)).or_insert(i64::MIN);
                if ts > *newest {
                    *newest = ts;
                    p.fresh.push((device(d), ts, now));
                }
            }
        }
        let key: PositionKey = (device(d), ts);
        self.servers
            .append(now, Some(Gateway::fix_payload(d, ts, fault)), Some(key));
    }

    fn flush_late(&mut self, all: bool) {
        let now = now_ms();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late)
            .into_iter()
            .partition(|(at, ..)| all || *at <= now);
        self.late = later;
        for (_, d, ts, fault) in due {
            self.append_fix(d, ts, fault);
        }
    }
}

/// The gateway: waits for both broadcast groups, appends the drawn traffic, lets the
/// joiner in, then waits for the scenario's word and appends one last fix per device.
async fn gateway(
    servers: Servers,
    observed: Observed,
    traffic: Vec<(u64, Item)>,
    join_at: u64,
) -> turmoil::Result {
    while servers.lock().live.groups.len() < 2 {
        tokio::time::sleep(TICK).await;
    }
    let mut g = Gateway {
        servers: servers.clone(),
        observed: observed.clone(),
        last_ts: BTreeMap::new(),
        late: Vec::new(),
    };
    let mut joined = None;
    for (gap, item) in traffic {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let now = now_ms();
        let elapsed = now - T0;
        if joined.is_none() && elapsed >= join_at {
            servers
                .lock()
                .live
                .members
                .entry(device(JOINER))
                .or_default()
                .insert(PUBLIC_1);
            servers.note(format_args!("{now} {} joins {PUBLIC_1}", device(JOINER)));
            joined = Some(elapsed);
        }
        g.flush_late(false);
        match item {
            Item::Garbage => {
                servers.append(now, Some(Bytes::from_static(b"{\"device_id\":")), None)
            }
            Item::Fix {
                device: d,
                back_ms,
                fault,
                duplicate,
                late_ms,
            } => {
                if d == JOINER && joined.is_none_or(|at| elapsed < at + JOIN_MARGIN_MS) {
                    continue;
                }
                let ts = g.next_ts(d, now, back_ms);
                if let Some(late) = late_ms {
                    g.late.push((now + late, d, ts, fault));
                    continue;
                }
                g.append_fix(d, ts, fault);
                if duplicate {
                    g.append_fix(d, ts, fault);
                }
            }
        }
    }
    g.flush_late(true);
    observed.lock().traffic_done = true;
    while !observed.lock().final_round {
        tokio::time::sleep(TICK).await;
    }
    let now = now_ms();
    for d in 0..DEVICES {
        if d == JOINER && joined.is_none() {
            continue;
        }
        let ts = g.next_ts(d, now, 0);
        g.append_fix(d, ts, 0);
    }
    Ok(())
}

fn token_for(event: Uuid) -> String {
    let claims = serde_json::json!({
        "sub": "sim-client",
        "events": [event.to_string()],
        "exp": T0 / 1_000 + 86_400,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

fn client_plans(seed: u64) -> Vec<ClientPlan> {
    let (e1, e2, e3) = (topic(PUBLIC_1), topic(PUBLIC_2), topic(PRIVATE));
    let plan = |i: u64, slow: bool, topics: Vec<&String>, forbidden: Vec<&String>| ClientPlan {
        name: format!("c{i}"),
        home: if i % 2 == 0 { "p1" } else { "p2" },
        other: if i % 2 == 0 { "p2" } else { "p1" },
        slow,
        topics: topics.into_iter().cloned().collect(),
        forbidden: forbidden.into_iter().cloned().collect(),
        token: None,
        seed: seed ^ (0xc11e_0000 + i),
    };
    let mut granted = plan(5, true, vec![&e1, &e3], vec![]);
    granted.token = Some(token_for(PRIVATE));
    vec![
        plan(0, false, vec![&e1, &e2], vec![]),
        plan(1, false, vec![&e1], vec![]),
        plan(2, false, vec![&e2], vec![&e3]),
        plan(3, false, vec![&e1, &e2], vec![&e3]),
        plan(4, true, vec![&e1, &e2], vec![]),
        granted,
    ]
}

/// Runs one seed. Prints `SIM_SEED=<seed>` first.
pub fn run_fanout(seed: u64) -> FanoutReport {
    run_fanout_with(seed, NetLiveDefect::None)
}

/// [`run_fanout`] with a planted defect in the instances' wiring (never in the shell).
pub fn run_fanout_with(seed: u64, defect: NetLiveDefect) -> FanoutReport {
    eprintln!("SIM_SEED={seed}");
    let mut rng = SimRng::new(seed);
    let servers = Servers::new();
    {
        let mut state = servers.lock();
        state.live.members = initial_members();
        state.live.events = BTreeMap::from([
            (PUBLIC_1, ("Rally".to_owned(), Visibility::Public)),
            (PUBLIC_2, ("Marathon".to_owned(), Visibility::Public)),
            (PRIVATE, ("Team training".to_owned(), Visibility::Private)),
        ]);
    }
    let observed = Observed::default();
    let mut sim = world(seed, BUDGET, &servers);
    let skew_ms = rng.range_i64(-30_000, 30_000);
    let mut fault_plan = plan_faults(seed, &mut rng);
    let mut metrics = BTreeMap::new();
    // Held to the end: a dropped sender would stop its instance.
    let mut stops = BTreeMap::new();
    for (name, skew_ms) in [("p1", 0), ("p2", skew_ms)] {
        let (stop_tx, stop) = watch::channel(false);
        stops.insert(name, stop_tx);
        let plan = InstancePlan {
            name,
            skew_ms,
            durable: durable_config(),
            live: live_config(),
            map_refresh: MAP_REFRESH,
            group_ttl: GROUP_TTL,
            metrics: Arc::new(Metrics::new(name)),
            defect,
            stop,
        };
        metrics.insert(name, plan.metrics.clone());
        let s = servers.clone();
        sim.host(name, move || instance::run(s.clone(), plan.clone()));
    }
    let plans = client_plans(seed);
    for plan in plans.clone() {
        let o = observed.clone();
        let name = plan.name.clone();
        sim.host(name.as_str(), move || {
            ws_client::run(plan.clone(), o.clone())
        });
    }
    let traffic = draw_traffic(&mut rng);
    let (s, o, join_at) = (servers.clone(), observed.clone(), fault_plan.join_at);
    sim.client("gateway", gateway(s, o, traffic, join_at));

    let mut faults = FaultSchedule::new(std::mem::take(&mut fault_plan.faults));
    let mut violations = Vec::new();
    let mut final_due_at = None;
    let mut gateway_done = false;
    let stopping = fault_plan.stop_at.map(|at| ("p1", at));
    loop {
        let elapsed = sim.elapsed().as_millis() as u64;
        faults.apply_due(&mut sim, &servers);
        if let Some((name, at)) = stopping {
            if elapsed >= at && !*stops[name].borrow() {
                servers.note(format_args!("{} {name} asked to stop", now_ms()));
                let _ = stops[name].send(true);
            }
        }
        match sim.step() {
            Ok(done) => gateway_done |= done,
            Err(e) => {
                violations.push(format!("a host failed: {e}"));
                break;
            }
        }
        if elapsed % 100 == 0 {
            if final_due_at.is_none()
                && faults.done()
                && observed.lock().traffic_done
                && durable_quiet(&servers)
                && groups_settled(&servers, fault_plan.dead_for_good)
                && stopped(&servers, stopping)
            {
                // Time for reconnects and resubscriptions before the last round.
                final_due_at = Some(elapsed + SETTLE_MS);
            }
            if final_due_at.is_some_and(|t| elapsed >= t) {
                observed.lock().final_round = true;
            }
            if gateway_done
                && durable_quiet(&servers)
                && behind(&plans, &observed, &servers).is_empty()
            {
                break;
            }
        }
        if sim.elapsed() > BUDGET {
            violations.push(format!(
                "not quiet after {} s of simulated time",
                BUDGET.as_secs()
            ));
            violations.extend(behind(&plans, &observed, &servers));
            break;
        }
    }

    let expected: BTreeSet<PositionKey> = servers.lock().keys.values().flatten().cloned().collect();
    judge_durable(&servers, &expected, &mut violations);
    let seen = observed.lock();
    for log in seen.clients.values() {
        violations.extend(log.violations.iter().cloned());
    }
    let fast: BTreeSet<&str> = plans
        .iter()
        .filter(|p| !p.slow)
        .map(|p| p.name.as_str())
        .collect();
    let calm = |at: u64| {
        let since_start = at.saturating_sub(T0);
        !fault_plan
            .unsettled
            .iter()
            // A fix appended just before a fault may still be on its way when it strikes.
            .any(|(from, to)| since_start + 1_000 >= *from && since_start <= *to)
    };
    let mut calm_latency_max_ms = 0;
    for (name, log) in &seen.clients {
        if !fast.contains(name.as_str()) {
            continue;
        }
        for a in log.arrivals.iter().filter(|a| calm(a.appended_at)) {
            calm_latency_max_ms = calm_latency_max_ms.max(a.latency_ms);
            if a.latency_ms > CALM_LATENCY_BOUND_MS {
                violations.push(format!(
                    "{name} on {} got a position {} ms after its append, with no fault in effect",
                    a.instance, a.latency_ms
                ));
            }
        }
    }
    let members = servers.lock().live.members.clone();
    for plan in plans.iter().filter(|p| !p.slow) {
        let Some(log) = seen.clients.get(&plan.name) else {
            continue;
        };
        for (d, ts, at) in seen.published.fresh.iter().filter(|(_, _, at)| calm(*at)) {
            let events = members.get(d).cloned().unwrap_or_default();
            for t in plan
                .topics
                .iter()
                .filter(|t| events.iter().any(|e| topic(*e) == **t))
            {
                let owed = log.sessions.iter().filter(|s| {
                    s.live_since.get(t).is_some_and(|since| since <= at)
                        && s.closed_at.is_none_or(|c| c > at + CALM_LATENCY_BOUND_MS)
                });
                for s in owed {
                    if !s.got.contains(&(t.clone(), d.clone(), *ts)) {
                        violations.push(format!(
                            "{} on {} never got {t} {d} ts {ts}, appended at {} ms with no fault in effect",
                            plan.name,
                            s.instance,
                            at - T0
                        ));
                    }
                }
            }
        }
    }
    for (name, m) in &metrics {
        if fault_plan.crashed.contains(name) {
            continue;
        }
        let received = orphans_received(&servers, name);
        let counted = m.live_broadcast_orphan_records.get();
        if counted != received {
            violations.push(format!(
                "{name} counted {counted} orphan records, its broadcast reads brought {received}"
            ));
        }
    }
    // A group is swept only when its instance's heartbeat lapsed: it was down or cut off
    // from Redis (for up to a TTL after), or dead for good.
    for (at, name) in &servers.lock().live.removed {
        let since_start = at.saturating_sub(T0);
        let excused = fault_plan.dead_for_good == Some(name.as_str())
            || stopping.is_some_and(|(n, at)| n == name.as_str() && since_start >= at)
            || fault_plan.redis_outages.iter().any(|(i, from, to)| {
                *i == name.as_str()
                    && *from <= since_start
                    && since_start <= to + GROUP_TTL.as_millis() as u64 + SETTLE_MS
            });
        if !excused {
            violations.push(format!(
                "the broadcast group of {name} was swept at {since_start} ms while it was alive and reached Redis"
            ));
        }
    }
    // The only retryable errors are look-ups that failed while p2 was cut off from
    // Postgres (or timed out just after).
    let (pg_from, pg_to) = fault_plan.postgres_outage;
    for (name, log) in &seen.clients {
        for (at, host, topic) in &log.retried {
            let since_start = at.saturating_sub(T0);
            if *host != "p2" || since_start < pg_from || since_start > pg_to + SETTLE_MS {
                violations.push(format!(
                    "{name} on {host} was told to retry {topic} at {since_start} ms, with Postgres reachable"
                ));
            }
        }
    }
    let groups: BTreeSet<String> = servers.lock().live.groups.keys().cloned().collect();
    let alive: BTreeSet<String> = ["p1", "p2"]
        .into_iter()
        .filter(|n| Some(*n) != fault_plan.dead_for_good)
        .filter(|n| stopping.is_none_or(|(s, _)| s != *n))
        .map(str::to_owned)
        .collect();
    if groups != alive {
        violations.push(format!(
            "broadcast groups {groups:?} at the end, instances alive {alive:?}"
        ));
    }
    if let Some((name, at)) = stopping {
        judge_stop(&servers, &seen, &plans, name, at, &mut violations);
    }
    let conflated = metrics
        .values()
        .map(|m| m.live_conflated_messages.get())
        .sum();
    let trace_hash = servers.trace_hash() ^ seen.trace.hash().rotate_left(1);
    if let Some(path) = std::env::var_os("SIM_NET_TRACE") {
        let _ = std::fs::write(path, servers.trace_text().join("\n"));
    }
    let entries = servers.lock().keys.len();
    FanoutReport {
        seed,
        violations,
        faults: faults.applied,
        trace_hash,
        entries,
        frames: seen
            .clients
            .values()
            .flat_map(|l| &l.sessions)
            .map(|s| s.view.frames())
            .sum(),
        calm_latency_max_ms,
        conflated,
        sessions: seen.clients.values().map(|l| l.sessions.len()).sum(),
        stopped_at: fault_plan.stop_at,
        sim_ms: sim.elapsed().as_millis() as u64,
    }
}

/// Records of the device in no event among those `instance`'s broadcast reads brought.
fn orphans_received(servers: &Servers, instance: &str) -> u64 {
    let state = servers.lock();
    let orphan = device(ORPHAN);
    state
        .broadcast_received
        .get(instance)
        .into_iter()
        .flatten()
        .filter(|id| matches!(state.keys.get(id), Some(Some((d, _))) if *d == orphan))
        .count() as u64
}

fn durable_quiet(servers: &Servers) -> bool {
    let state = servers.lock();
    state.stream.undelivered() == 0
        && state.stream.pending().is_empty()
        && state
            .keys
            .values()
            .flatten()
            .all(|k| state.store.rows().contains_key(k))
}

/// The instance asked to stop, if any, went through every stage.
fn stopped(servers: &Servers, stopping: Option<(&str, u64)>) -> bool {
    stopping.is_none_or(|(name, _)| {
        servers
            .lock()
            .stages
            .iter()
            .any(|(_, n, stage)| n == name && *stage == Stage::Stopped)
    })
}

/// The contract's shutdown (§7), as the world saw it: the stages in order; every client
/// connected when the stop came closed with 1001; the broadcast group destroyed by its own
/// instance before the durable consumer left (a slow client only has to be let go); the consumer removed, so none of its entries
/// pending (nothing else failed here), and nothing read after that. Nothing uncommitted
/// acked and nothing committed lost are the durable invariants, judged on every run.
fn judge_stop(
    servers: &Servers,
    seen: &ObservedState,
    plans: &[ClientPlan],
    name: &str,
    asked_at: u64,
    violations: &mut Vec<String>,
) {
    let state = servers.lock();
    let stages: Vec<(u64, Stage)> = state
        .stages
        .iter()
        .filter(|(_, n, _)| n == name)
        .map(|(at, _, stage)| (*at, *stage))
        .collect();
    let order: Vec<Stage> = stages.iter().map(|(_, s)| *s).collect();
    let expected = [
        Stage::LiveStopped,
        Stage::DurableStopped,
        Stage::LeftGroup(Some(ConsumerRemoval::Removed)),
        Stage::Stopped,
    ];
    if order != expected {
        violations.push(format!(
            "{name} stopped in stages {order:?}, not {expected:?}"
        ));
    }
    let asked = asked_at + T0;
    for (client, log) in &seen.clients {
        let cut = log
            .sessions
            .iter()
            .filter(|s| s.instance == name && s.closed_at.is_none_or(|c| c >= asked));
        // A slow client may not read what was queued before the close frame within the
        // linger the server gives it; only that it was let go is asked of it.
        let slow = plans.iter().any(|p| p.name == *client && p.slow);
        for session in cut {
            if session.closed_at.is_none() {
                violations.push(format!(
                    "{client} is still connected to {name}, which stopped"
                ));
            } else if !slow && session.close_code != Some(1001) {
                violations.push(format!(
                    "{client} on {name}, connected when it was asked to stop, ended with close code {:?}, not 1001",
                    session.close_code
                ));
            }
        }
    }
    let destroyed = state.live.destroyed.iter().find(|(_, n)| n == name);
    let left = state.departures.iter().find(|(_, c, _)| c == name);
    match (destroyed, left) {
        (Some((d, _)), Some((l, _, removed))) => {
            if d > l {
                violations.push(format!(
                    "{name} left the durable group at {} ms, before it destroyed its broadcast group at {} ms",
                    l - T0,
                    d - T0
                ));
            }
            if !removed {
                violations.push(format!(
                    "{name} stopped cleanly with entries of its own still pending"
                ));
            }
        }
        (d, l) => violations.push(format!(
            "{name} stopped without destroying its broadcast group ({d:?}) or leaving the durable group ({l:?})"
        )),
    }
}

/// The group of an instance dead for good is gone.
fn groups_settled(servers: &Servers, dead: Option<&str>) -> bool {
    dead.is_none_or(|d| !servers.lock().live.groups.contains_key(d))
}

/// Per client, what it lacks: an open session, live on each of its topics, holding the
/// newest fix of each device of them.
fn behind(plans: &[ClientPlan], observed: &Observed, servers: &Servers) -> Vec<String> {
    let members = servers.lock().live.members.clone();
    let seen = observed.lock();
    let mut lacking = Vec::new();
    for plan in plans {
        let Some(session) = seen
            .clients
            .get(&plan.name)
            .and_then(|l| l.sessions.last())
            .filter(|s| s.open)
        else {
            lacking.push(format!("{} has no open session", plan.name));
            continue;
        };
        let live = session.view.live_topics();
        for t in &plan.topics {
            if !live.contains(t) {
                lacking.push(format!(
                    "{} on {} is not live on {t}",
                    plan.name, session.instance
                ));
                continue;
            }
            for (d, events) in &members {
                if !events.iter().any(|e| topic(*e) == *t) {
                    continue;
                }
                let newest = seen.published.newest.get(d).copied();
                let got = session.view.last(t, d);
                if newest != got {
                    lacking.push(format!(
                        "{} on {}: {t} {d}: has {got:?}, newest {newest:?}",
                        plan.name, session.instance
                    ));
                }
            }
        }
    }
    lacking
}
