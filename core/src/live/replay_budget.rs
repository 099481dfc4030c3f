//! The instance's limit on replays running at once (`LIVE_REPLAY_MAX_TOTAL`, contract
//! section 5.1), shared by every hub shard of the instance: a shard's share would refuse a
//! replay while the instance is under the limit (its connections' replays are not spread
//! evenly) and let the instance run over it by rounding.
//!
//! A count of slots taken, decided by one atomic step per take: a replay is admitted only
//! by the take that finds fewer than the limit taken. Which hub takes first depends on the
//! order their inputs come in, as any limit does.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct ReplayBudget {
    max: usize,
    taken: AtomicUsize,
}

impl ReplayBudget {
    pub fn new(max: usize) -> ReplayBudget {
        ReplayBudget {
            max,
            taken: AtomicUsize::new(0),
        }
    }

    /// Takes a slot if fewer than the limit are taken.
    pub fn try_take(&self) -> bool {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.max).then_some(taken + 1)
            })
            .is_ok()
    }

    /// Gives `n` slots back.
    pub fn give_back(&self, n: usize) {
        self.taken.fetch_sub(n, Ordering::AcqRel);
    }

    /// Slots taken now, over every hub sharing the budget.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_limit_and_given_back() {
        let budget = ReplayBudget::new(2);
        assert!(budget.try_take());
        assert!(budget.try_take());
        assert!(!budget.try_take(), "the limit");
        assert_eq!(budget.taken(), 2);
        budget.give_back(1);
        assert_eq!(budget.taken(), 1);
        assert!(budget.try_take());
        budget.give_back(0);
        budget.give_back(2);
        assert_eq!(budget.taken(), 0);
        assert_eq!(budget.max(), 2);
        assert!(!ReplayBudget::new(0).try_take());
    }
}
