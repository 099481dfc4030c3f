//! The stateless faulty-position rules (contract section 4).
//!
//! A faulty position is stored with `faulty = true` but never broadcast and never part of a
//! snapshot. The stateful rules of the live path (ts not newer, implied speed) live with the
//! live state machine; these are the ones that need only the position and the current time.

use crate::{Position, UnixMillis};

/// Thresholds of the stateless rules, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultyThresholds {
    /// `FAULTY_MIN_SATELLITES`: fewer satellites than this is no usable fix.
    pub min_satellites: u8,
    /// `FAULTY_MAX_FUTURE_MS`: how far ahead of the processing time a fix time may be.
    pub max_future_ms: u64,
    /// `FAULTY_MIN_TIMESTAMP`: an earlier fix time is a clock that was never set (1970,
    /// the GPS epoch of 1980, a week-number rollover).
    pub min_timestamp: UnixMillis,
}

impl FaultyThresholds {
    /// 2010-01-01T00:00:00Z, the contract's default `FAULTY_MIN_TIMESTAMP`.
    pub const DEFAULT_MIN_TIMESTAMP: UnixMillis = UnixMillis(1_262_304_000_000);
}

impl Default for FaultyThresholds {
    fn default() -> Self {
        FaultyThresholds {
            min_satellites: 3,
            max_future_ms: 60_000,
            min_timestamp: FaultyThresholds::DEFAULT_MIN_TIMESTAMP,
        }
    }
}

/// Why a position is faulty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultReason {
    /// At exactly (0, 0).
    NullIsland,
    /// Fewer than `min_satellites` satellites.
    TooFewSatellites,
    /// Fix time more than `max_future_ms` ahead of the processing time.
    InTheFuture,
    /// Fix time before `min_timestamp`.
    BeforeMinTimestamp,
}

impl FaultReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::NullIsland => "at (0, 0)",
            FaultReason::TooFewSatellites => "too few satellites",
            FaultReason::InTheFuture => "fix time in the future",
            FaultReason::BeforeMinTimestamp => "fix time before FAULTY_MIN_TIMESTAMP",
        }
    }
}

/// The first stateless rule `position` breaks at processing time `now`, if any.
pub fn fault_reason(
    position: &Position,
    now: UnixMillis,
    thresholds: &FaultyThresholds,
) -> Option<FaultReason> {
    if position.is_null_island() {
        Some(FaultReason::NullIsland)
    } else if position.satellites < thresholds.min_satellites {
        Some(FaultReason::TooFewSatellites)
    } else if position.ts > now.plus(thresholds.max_future_ms) {
        Some(FaultReason::InTheFuture)
    } else if position.ts < thresholds.min_timestamp {
        Some(FaultReason::BeforeMinTimestamp)
    } else {
        None
    }
}

/// Shorthand for `fault_reason(..).is_some()`.
pub fn is_faulty(position: &Position, now: UnixMillis, thresholds: &FaultyThresholds) -> bool {
    fault_reason(position, now, thresholds).is_some()
}
