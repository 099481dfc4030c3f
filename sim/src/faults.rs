//! The fault plan of one run, itself drawn from the seed ("swarm testing").
//!
//! Rather than one mix of faults for every run, each seed draws its own: which faults occur
//! at all, how often, how slow the network and the database are, and the writer's own
//! settings. Some seeds then crash often and never trim, others trim and never crash, and so
//! on; combinations that a single uniform mix would make vanishingly rare come up.

use processor_core::durable::DurableConfig;
use processor_core::faulty::FaultyThresholds;

use crate::rng::SimRng;
use crate::traffic::TrafficMix;

/// A latency distribution: uniform in `min..=max`, with a slow tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub min_ms: u64,
    pub max_ms: u64,
    pub slow_p: f64,
    pub slow_max_ms: u64,
}

impl Latency {
    pub fn draw(&self, rng: &mut SimRng) -> u64 {
        if rng.chance(self.slow_p) {
            rng.range(self.max_ms, self.slow_max_ms.max(self.max_ms))
        } else {
            rng.range(self.min_ms, self.max_ms)
        }
    }

    pub fn fixed(ms: u64) -> Latency {
        Latency {
            min_ms: ms,
            max_ms: ms,
            slow_p: 0.0,
            slow_max_ms: ms,
        }
    }
}

/// How one kind of command fails: before it takes effect, or after (the answer is lost).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpFaults {
    pub fail_before: f64,
    pub fail_after: f64,
}

/// Everything a seed decides before the run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub durable: DurableConfig,
    pub instances: usize,
    pub entries: usize,
    /// Entries appended before any instance starts.
    pub preloaded: usize,
    /// Length of the phase with faults; appends happen during it.
    pub fault_phase_ms: u64,
    /// `BLOCK` of a read of new entries.
    pub block_ms: u64,
    pub redis_latency: Latency,
    pub postgres_latency: Latency,
    pub read: OpFaults,
    pub claim: OpFaults,
    /// Transient write failures; `fail_after` commits and then loses the answer.
    pub write: OpFaults,
    pub dead_letter: OpFaults,
    pub ack: OpFaults,
    /// Mean time between instance crashes.
    pub crash_every_ms: Option<u64>,
    pub restart_after_ms: u64,
    /// A crashed instance comes back under its old consumer name with this probability.
    pub same_name_p: f64,
    /// A command sent before a crash still reaches the server with this probability.
    pub crash_keeps_request_p: f64,
    /// Mean time between graceful stops (each followed by a restart).
    pub stop_every_ms: Option<u64>,
    /// How long a stopping instance may take before it is killed.
    pub grace_ms: u64,
    /// Mean time between process stalls (GC pause, VM freeze), and their longest.
    pub stall_every_ms: Option<u64>,
    pub stall_max_ms: u64,
    /// Mean time between entry deletions (`XDEL`).
    pub trim_every_ms: Option<u64>,
    /// Mean time between Postgres outages, and their longest.
    pub outage_every_ms: Option<u64>,
    pub outage_max_ms: u64,
    /// Mean time between steps of an instance's clock, and the largest offset from the
    /// servers' clock.
    pub clock_step_every_ms: Option<u64>,
    pub skew_max_ms: u64,
    /// Mean time between timer calls nobody asked for.
    pub spurious_timeout_every_ms: Option<u64>,
    /// Whether a rejected statement names the offending row (Postgres does not).
    pub report_row_index: bool,
    /// An append is a burst of up to `burst_max` entries at once with this probability
    /// (a gateway flushing its backlog).
    pub burst_p: f64,
    pub burst_max: u64,
    pub mix: TrafficMix,
}

fn sometimes(rng: &mut SimRng, p: f64, lo: u64, hi: u64) -> Option<u64> {
    rng.chance(p).then(|| rng.range(lo, hi))
}

fn op_faults(rng: &mut SimRng, max: f64) -> OpFaults {
    if rng.chance(0.4) {
        return OpFaults::default();
    }
    OpFaults {
        fail_before: rng.float(0.0, max),
        fail_after: rng.float(0.0, max),
    }
}

fn probability(rng: &mut SimRng, off_p: f64, max: f64) -> f64 {
    if rng.chance(off_p) {
        0.0
    } else {
        rng.float(0.0, max)
    }
}

impl FaultPlan {
    /// A plan drawn from `rng`.
    pub fn draw(rng: &mut SimRng) -> FaultPlan {
        let claim_idle_ms = rng.range(300, 5_000);
        let durable = DurableConfig {
            batch_size: [1, 2, 3, 5, 8, 16, 32][rng.index(7)],
            max_in_flight: rng.range(1, 3) as usize,
            max_deliveries: rng.range(1, 5),
            claim_idle_ms,
            claim_interval_ms: rng.range(100, 3_000),
            retry_min_ms: rng.range(5, 200),
            retry_max_ms: rng.range(200, 3_000),
            faulty: FaultyThresholds {
                min_satellites: 3,
                max_future_ms: rng.range(5_000, 120_000),
                min_timestamp: processor_core::UnixMillis(i64::MIN),
            },
        };
        let entries = rng.range(30, 250) as usize;
        let redis_max = rng.range(1, 20);
        let postgres_max = rng.range(5, 60);
        FaultPlan {
            durable,
            instances: rng.range(1, 4) as usize,
            entries,
            preloaded: rng.range(0, entries as u64 / 3) as usize,
            fault_phase_ms: rng.range(5_000, 45_000),
            block_ms: rng.range(100, 2_000),
            redis_latency: Latency {
                min_ms: rng.range(0, 1),
                max_ms: redis_max,
                slow_p: probability(rng, 0.5, 0.05),
                slow_max_ms: rng.range(redis_max, claim_idle_ms * 2),
            },
            postgres_latency: Latency {
                min_ms: rng.range(1, 5),
                max_ms: postgres_max,
                slow_p: probability(rng, 0.4, 0.1),
                slow_max_ms: rng.range(postgres_max, claim_idle_ms * 3),
            },
            read: op_faults(rng, 0.1),
            claim: op_faults(rng, 0.1),
            write: op_faults(rng, 0.2),
            dead_letter: op_faults(rng, 0.2),
            ack: op_faults(rng, 0.1),
            crash_every_ms: sometimes(rng, 0.6, 1_000, 15_000),
            restart_after_ms: rng.range(0, 5_000),
            same_name_p: rng.unit(),
            crash_keeps_request_p: rng.unit(),
            stop_every_ms: sometimes(rng, 0.4, 2_000, 20_000),
            grace_ms: rng.range(50, 10_000),
            stall_every_ms: sometimes(rng, 0.4, 1_000, 15_000),
            stall_max_ms: rng.range(100, claim_idle_ms * 3),
            trim_every_ms: sometimes(rng, 0.4, 300, 8_000),
            outage_every_ms: sometimes(rng, 0.4, 2_000, 20_000),
            outage_max_ms: rng.range(100, 8_000),
            clock_step_every_ms: sometimes(rng, 0.3, 1_000, 15_000),
            skew_max_ms: if rng.chance(0.5) {
                0
            } else {
                rng.range(1, 5_000)
            },
            spurious_timeout_every_ms: sometimes(rng, 0.3, 100, 5_000),
            report_row_index: rng.chance(0.3),
            burst_p: probability(rng, 0.3, 0.3),
            burst_max: rng.range(2, 40),
            mix: TrafficMix {
                devices: rng.range(1, 8) as usize,
                marker_devices: rng.range(0, 2) as usize,
                ts_slots: rng.range(3, 200),
                decode_error_p: probability(rng, 0.3, 0.15),
                marker_p: probability(rng, 0.3, 0.15),
                null_island_p: probability(rng, 0.3, 0.1),
                low_satellites_p: probability(rng, 0.3, 0.1),
                rfc3339_p: probability(rng, 0.3, 0.3),
                attributes_p: rng.unit(),
            },
        }
    }

    /// A plan with no faults at all, for runs whose faults are scripted elsewhere.
    pub fn calm(durable: DurableConfig, instances: usize) -> FaultPlan {
        FaultPlan {
            durable,
            instances,
            entries: 0,
            preloaded: 0,
            fault_phase_ms: 0,
            block_ms: 500,
            redis_latency: Latency::fixed(1),
            postgres_latency: Latency::fixed(3),
            read: OpFaults::default(),
            claim: OpFaults::default(),
            write: OpFaults::default(),
            dead_letter: OpFaults::default(),
            ack: OpFaults::default(),
            crash_every_ms: None,
            restart_after_ms: 0,
            same_name_p: 1.0,
            crash_keeps_request_p: 0.0,
            stop_every_ms: None,
            grace_ms: 10_000,
            stall_every_ms: None,
            stall_max_ms: 0,
            trim_every_ms: None,
            outage_every_ms: None,
            outage_max_ms: 0,
            clock_step_every_ms: None,
            skew_max_ms: 0,
            spurious_timeout_every_ms: None,
            report_row_index: false,
            burst_p: 0.0,
            burst_max: 0,
            mix: TrafficMix::default(),
        }
    }

    /// An upper bound on how long healing may take before the run counts as stuck: enough
    /// for a refused row to be claimed `max_deliveries` times, with every back-off maxed out.
    pub fn healing_budget_ms(&self) -> u64 {
        let d = &self.durable;
        let round = d.claim_idle_ms
            + d.claim_interval_ms
            + d.retry_max_ms
            + self.block_ms
            + self.redis_latency.slow_max_ms * 2
            + self.postgres_latency.slow_max_ms;
        (d.max_deliveries + 4) * round * 2 + self.grace_ms + 60_000
    }
}
