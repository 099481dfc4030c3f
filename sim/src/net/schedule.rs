//! What both network scenarios share: the turmoil world with the Redis and Postgres hosts,
//! and faults applied at their planned simulated times.

use std::time::{Duration, UNIX_EPOCH};

use turmoil::Sim;

use super::servers::{serve, Servers, POSTGRES_PORT, REDIS_PORT};
use crate::traffic::T0;

/// turmoil's step: the granularity of simulated time.
pub const TICK: Duration = Duration::from_millis(10);

/// A fault, applied at a simulated time.
#[derive(Debug, Clone)]
pub enum Fault {
    Partition(&'static str, &'static str),
    Repair(&'static str, &'static str),
    Crash(&'static str),
    Bounce(&'static str),
    /// Messages between the two hosts are held (a slow link) until released.
    Hold(&'static str, &'static str),
    Release(&'static str, &'static str),
}

/// A world whose clock starts at [`T0`] and whose randomness is the seed's, with the
/// "redis" and "postgres" hosts serving `servers`. It may run `budget` plus a minute.
pub fn world(seed: u64, budget: Duration, servers: &Servers) -> Sim<'static> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(T0))
        .simulation_duration(budget + Duration::from_secs(60))
        .tick_duration(TICK)
        .build();
    for (host, port) in [("redis", REDIS_PORT), ("postgres", POSTGRES_PORT)] {
        let s = servers.clone();
        sim.host(host, move || serve(s.clone(), port));
    }
    sim
}

/// Planned faults, applied as simulated time reaches them.
pub struct FaultSchedule {
    /// Latest first, so the next one is at the end.
    pending: Vec<(u64, Fault)>,
    /// What was applied, when, for the report.
    pub applied: Vec<String>,
}

impl FaultSchedule {
    pub fn new(mut faults: Vec<(u64, Fault)>) -> FaultSchedule {
        faults.sort_by_key(|(t, _)| *t);
        faults.reverse();
        FaultSchedule {
            pending: faults,
            applied: Vec::new(),
        }
    }

    /// Applies every fault due by now, noting each in the servers' trace.
    pub fn apply_due(&mut self, sim: &mut Sim<'_>, servers: &Servers) {
        let elapsed = sim.elapsed().as_millis() as u64;
        while self.pending.last().is_some_and(|(t, _)| *t <= elapsed) {
            let Some((t, fault)) = self.pending.pop() else {
                break;
            };
            match &fault {
                Fault::Partition(a, b) => sim.partition(*a, *b),
                Fault::Repair(a, b) => sim.repair(*a, *b),
                Fault::Crash(h) => sim.crash(*h),
                Fault::Bounce(h) => sim.bounce(*h),
                Fault::Hold(a, b) => sim.hold(*a, *b),
                Fault::Release(a, b) => sim.release(*a, *b),
            }
            servers.note(format_args!("{t} ms: {fault:?}"));
            self.applied.push(format!("{t} ms: {fault:?}"));
        }
    }

    /// Every fault has been applied.
    pub fn done(&self) -> bool {
        self.pending.is_empty()
    }
}
