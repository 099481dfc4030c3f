//! Exponential back-off between retries (contract section 7: Redis or Postgres going away
//! is survived by retrying with back-off).

/// Delay before retry number `attempt` (1 for the first retry): doubling from `min_ms`,
/// capped at `max_ms`.
pub fn backoff_ms(attempt: u32, min_ms: u64, max_ms: u64) -> u64 {
    let shift = attempt.saturating_sub(1).min(32);
    min_ms.saturating_mul(1u64 << shift).min(max_ms)
}

/// The delays of one thing that keeps failing (a connection, a start-up step): doubling
/// from the first, capped, and from the first again after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    failures: u32,
}

impl Backoff {
    pub const fn new(min_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            min_ms,
            max_ms,
            failures: 0,
        }
    }

    /// One more failure: how long to wait before trying again.
    pub fn failed(&mut self) -> u64 {
        self.failures = self.failures.saturating_add(1);
        backoff_ms(self.failures, self.min_ms, self.max_ms)
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// How the service retries a dependency that is away (Redis, Postgres): 200 ms, doubling
/// to 5 s.
pub const RECONNECT: Backoff = Backoff::new(200, 5_000);

/// How the live path's broadcast consumer retries Redis: spectators' maps wait on it, so a
/// healed outage is noticed within a second.
pub const LIVE_RECONNECT: Backoff = Backoff::new(100, 1_000);

#[cfg(test)]
mod tests {
    use super::{backoff_ms, Backoff, LIVE_RECONNECT, RECONNECT};

    #[test]
    fn a_failing_thing_waits_longer_each_time_and_starts_over_after_a_success() {
        let mut backoff = RECONNECT;
        let delays: Vec<u64> = (0..7).map(|_| backoff.failed()).collect();
        assert_eq!(delays, [200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), 200);
        let mut live = LIVE_RECONNECT;
        let delays: Vec<u64> = (0..6).map(|_| live.failed()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        let mut many = Backoff::new(1, 10);
        for _ in 0..100 {
            many.failed();
        }
        assert_eq!(many.failed(), 10);
    }

    #[test]
    fn doubles_then_caps() {
        assert_eq!(backoff_ms(1, 100, 5_000), 100);
        assert_eq!(backoff_ms(2, 100, 5_000), 200);
        assert_eq!(backoff_ms(6, 100, 5_000), 3_200);
        assert_eq!(backoff_ms(7, 100, 5_000), 5_000);
        assert_eq!(backoff_ms(u32::MAX, 100, 5_000), 5_000);
    }
}
