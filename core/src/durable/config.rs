//! Settings of the durable-write state machine.

use crate::faulty::FaultyThresholds;

/// How the durable writer batches, retries and gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableConfig {
    /// Entries asked for per read, and rows per write (`DURABLE_BATCH_SIZE`).
    pub batch_size: usize,
    /// Writes in flight at once (`DURABLE_MAX_IN_FLIGHT`, at most the pool size).
    pub max_in_flight: usize,
    /// Deliveries after which an entry that still cannot be stored is dead-lettered
    /// (`DURABLE_MAX_DELIVERIES`).
    pub max_deliveries: u64,
    /// Idle time after which pending entries of any consumer are claimed
    /// (`DURABLE_CLAIM_IDLE_MS`).
    pub claim_idle_ms: u64,
    /// Time between two claim sweeps.
    pub claim_interval_ms: u64,
    /// First and longest delay between retries of a failed write, read or dead-letter.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// The stateless faulty rules.
    pub faulty: FaultyThresholds,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            batch_size: 1_000,
            max_in_flight: 2,
            max_deliveries: 5,
            claim_idle_ms: 30_000,
            claim_interval_ms: 10_000,
            retry_min_ms: 100,
            retry_max_ms: 5_000,
            faulty: FaultyThresholds::default(),
        }
    }
}

impl DurableConfig {
    /// The settings the service runs with for `claim_idle_ms` (`DURABLE_CLAIM_IDLE_MS`):
    /// claim sweeps at half the idle time, between 0.1 and 10 s, so that a dead consumer's
    /// entries wait at most about half as long again; the default retries.
    pub fn for_claim_idle(claim_idle_ms: u64) -> DurableConfig {
        DurableConfig {
            claim_idle_ms,
            claim_interval_ms: (claim_idle_ms / 2).clamp(100, 10_000),
            ..DurableConfig::default()
        }
    }

    /// Entries held at once (read but not yet acked or released): enough to keep every write
    /// slot busy while the next read is under way.
    pub fn max_held(&self) -> usize {
        self.batch_size.max(1) * (self.max_in_flight.max(1) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_sweep_runs_at_half_the_idle_time_within_its_bounds() {
        let sweep = |idle| DurableConfig::for_claim_idle(idle).claim_interval_ms;
        assert_eq!(sweep(30_000), 10_000);
        assert_eq!(sweep(20_000), 10_000);
        assert_eq!(sweep(19_998), 9_999);
        assert_eq!(sweep(1_000), 500);
        assert_eq!(sweep(200), 100);
        assert_eq!(sweep(10), 100);
        let config = DurableConfig::for_claim_idle(1_000);
        assert_eq!(config.claim_idle_ms, 1_000);
        assert_eq!(
            (config.retry_min_ms, config.retry_max_ms),
            (
                DurableConfig::default().retry_min_ms,
                DurableConfig::default().retry_max_ms
            )
        );
    }
}
