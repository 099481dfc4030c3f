//! The client message rate (contract section 5): a token bucket per connection, refilled at
//! `LIVE_WS_MAX_MESSAGES_PER_S` and holding as many, counted in thousandths of a message so
//! that integer milliseconds refill it exactly.

use crate::MonoMillis;

#[derive(Debug, Clone, Copy)]
pub(crate) struct RateBucket {
    milli: u64,
    at: MonoMillis,
}

impl RateBucket {
    pub(crate) fn full(per_s: u32, now: MonoMillis) -> RateBucket {
        RateBucket {
            milli: u64::from(per_s) * 1_000,
            at: now,
        }
    }

    /// Takes one message at `now`; false when the connection is over its rate.
    pub(crate) fn take(&mut self, per_s: u32, now: MonoMillis) -> bool {
        let elapsed = now.since(self.at);
        self.at = self.at.max(now);
        // A message per second is 1,000 thousandths per 1,000 ms: `per_s` per millisecond.
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(u64::from(per_s)))
            .min(u64::from(per_s) * 1_000);
        if self.milli >= 1_000 {
            self.milli -= 1_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_then_one_per_interval() {
        let mut bucket = RateBucket::full(20, MonoMillis(0));
        for _ in 0..20 {
            assert!(bucket.take(20, MonoMillis(0)));
        }
        assert!(!bucket.take(20, MonoMillis(0)));
        assert!(!bucket.take(20, MonoMillis(49)));
        assert!(bucket.take(20, MonoMillis(50)));
        assert!(!bucket.take(20, MonoMillis(50)));
        // Idle time refills up to the burst, not beyond.
        for _ in 0..20 {
            assert!(bucket.take(20, MonoMillis(60_000)));
        }
        assert!(!bucket.take(20, MonoMillis(60_000)));
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let mut bucket = RateBucket::full(1, MonoMillis(10_000));
        assert!(bucket.take(1, MonoMillis(10_000)));
        assert!(!bucket.take(1, MonoMillis(5_000)));
        assert!(!bucket.take(1, MonoMillis(10_999)));
        assert!(bucket.take(1, MonoMillis(11_000)));
    }
}
