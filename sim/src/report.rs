//! What a run found: its plan, the violations and findings, counts, and the trace hash.

use std::collections::BTreeMap;

use crate::checker::{CheckerStats, Violation};
use crate::faults::FaultPlan;
use crate::finding::{Finding, FindingKind};
use crate::world::WorldStats;

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub plan: FaultPlan,
    pub violations: Vec<Violation>,
    pub more_violations: u64,
    pub findings: BTreeMap<FindingKind, (u64, Finding)>,
    pub trace_hash: u64,
    pub trace_records: u64,
    pub trace_tail: Vec<String>,
    pub checker: CheckerStats,
    pub world: WorldStats,
    pub events: u64,
    /// Simulated time the run took.
    pub sim_ms: u64,
}

impl RunReport {
    /// No invariant broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// One paragraph: the plan's main knobs, the counts and the violations.
    pub fn summary(&self) -> String {
        let p = &self.plan;
        let d = &p.durable;
        let c = &self.checker;
        let w = &self.world;
        let mut s = format!(
            "seed {}: {} instances, batch {}, in flight {}, max deliveries {}, claim idle {} ms; \
             {} entries ({} undecodable, {} refused, {} duplicate keys, {} deleted); \
             {} rows inserted ({} faulty), {} dead letters, {} orphans ({} settled); \
             {} crashes, {} clean exits, {} faults, {} claims ({} entries), {} events, {} simulated ms",
            self.seed,
            p.instances,
            d.batch_size,
            d.max_in_flight,
            d.max_deliveries,
            d.claim_idle_ms,
            c.appended,
            c.decode_errors,
            c.refused,
            c.duplicate_keys,
            c.deleted,
            c.inserted_rows,
            c.faulty_inserted,
            c.dead_letters,
            c.orphans,
            c.orphans_settled,
            w.crashes,
            w.clean_exits,
            w.faults_injected,
            w.claims,
            w.claimed_entries,
            self.events,
            self.sim_ms
        );
        const SHOWN: usize = 5;
        for v in self.violations.iter().take(SHOWN) {
            s.push_str(&format!("\n  violation: {v}"));
        }
        let more = self.more_violations + self.violations.len().saturating_sub(SHOWN) as u64;
        if more > 0 {
            s.push_str(&format!("\n  ... and {more} more violations"));
        }
        for (n, first) in self.findings.values() {
            s.push_str(&format!("\n  finding x{n}: {first}"));
        }
        s
    }
}
