//! The stateless faulty rules of contract section 4.

use std::collections::BTreeMap;

use processor_core::faulty::{fault_reason, is_faulty, FaultReason, FaultyThresholds};
use processor_core::{Position, UnixMillis};

const NOW: UnixMillis = UnixMillis(1_764_324_000_000);

const THRESHOLDS: FaultyThresholds = FaultyThresholds {
    min_satellites: 4,
    max_future_ms: 60_000,
    min_timestamp: processor_core::UnixMillis(i64::MIN),
};

/// A position that breaks none of the rules at `NOW`.
fn good() -> Position {
    Position {
        device_id: "356307042441013".into(),
        ts: NOW,
        latitude: 54.68,
        longitude: 25.28,
        altitude: 0.0,
        angle: 0.0,
        speed: 0.0,
        satellites: 9,
        priority: 0,
        event_io_id: None,
        attributes: BTreeMap::new(),
    }
}

fn at(latitude: f64, longitude: f64) -> Position {
    Position {
        latitude,
        longitude,
        ..good()
    }
}

fn reason(p: &Position) -> Option<FaultReason> {
    fault_reason(p, NOW, &THRESHOLDS)
}

#[test]
fn a_good_position_is_not_faulty() {
    assert_eq!(reason(&good()), None);
    assert!(!is_faulty(&good(), NOW, &THRESHOLDS));
}

#[test]
fn exactly_null_island_is_faulty() {
    assert_eq!(reason(&at(0.0, 0.0)), Some(FaultReason::NullIsland));
    // -0.0 is the same point.
    assert_eq!(reason(&at(-0.0, 0.0)), Some(FaultReason::NullIsland));
    assert_eq!(reason(&at(0.0, -0.0)), Some(FaultReason::NullIsland));
    assert!(is_faulty(&at(0.0, 0.0), NOW, &THRESHOLDS));
}

#[test]
fn near_null_island_or_on_its_axes_is_not_faulty() {
    for (lat, lon) in [
        (0.0, 25.28),
        (54.68, 0.0),
        (0.000_000_1, 0.0),
        (0.0, -0.000_000_1),
        (f64::MIN_POSITIVE, f64::MIN_POSITIVE),
    ] {
        assert_eq!(reason(&at(lat, lon)), None, "({lat}, {lon})");
    }
}

#[test]
fn min_satellites_is_the_lowest_count_accepted() {
    let with = |satellites| Position {
        satellites,
        ..good()
    };
    assert_eq!(reason(&with(4)), None);
    assert_eq!(reason(&with(255)), None);
    assert_eq!(reason(&with(3)), Some(FaultReason::TooFewSatellites));
    assert_eq!(reason(&with(0)), Some(FaultReason::TooFewSatellites));
}

#[test]
fn min_satellites_zero_accepts_every_count() {
    let none = FaultyThresholds {
        min_satellites: 0,
        ..THRESHOLDS
    };
    let p = Position {
        satellites: 0,
        ..good()
    };
    assert_eq!(fault_reason(&p, NOW, &none), None);
}

#[test]
fn exactly_max_future_ahead_is_fine_one_more_ms_is_faulty() {
    let with = |ts| Position {
        ts: UnixMillis(ts),
        ..good()
    };
    assert_eq!(reason(&with(NOW.as_i64() + 60_000)), None);
    assert_eq!(
        reason(&with(NOW.as_i64() + 60_001)),
        Some(FaultReason::InTheFuture)
    );
    assert_eq!(
        reason(&with(UnixMillis::MAX_FIX.as_i64())),
        Some(FaultReason::InTheFuture)
    );
}

#[test]
fn past_fixes_are_not_faulty_for_their_age() {
    for ts in [0, NOW.as_i64() - 1, NOW.as_i64() - 365 * 86_400_000] {
        let p = Position {
            ts: UnixMillis(ts),
            ..good()
        };
        assert_eq!(reason(&p), None, "{ts}");
    }
}

#[test]
fn zero_max_future_allows_exactly_now() {
    let strict = FaultyThresholds {
        max_future_ms: 0,
        ..THRESHOLDS
    };
    let ahead = |ms| Position {
        ts: NOW.plus(ms),
        ..good()
    };
    assert_eq!(fault_reason(&ahead(0), NOW, &strict), None);
    assert_eq!(
        fault_reason(&ahead(1), NOW, &strict),
        Some(FaultReason::InTheFuture)
    );
}

#[test]
fn a_huge_max_future_does_not_overflow() {
    let lax = FaultyThresholds {
        max_future_ms: u64::MAX,
        ..THRESHOLDS
    };
    let p = Position {
        ts: UnixMillis::MAX_FIX,
        ..good()
    };
    assert_eq!(fault_reason(&p, NOW, &lax), None);
    assert_eq!(fault_reason(&p, UnixMillis(i64::MAX), &lax), None);
}

#[test]
fn the_first_broken_rule_is_reported() {
    let all = Position {
        latitude: 0.0,
        longitude: 0.0,
        satellites: 0,
        ts: NOW.plus(3_600_000),
        ..good()
    };
    assert_eq!(reason(&all), Some(FaultReason::NullIsland));
    let two = Position {
        satellites: 0,
        ts: NOW.plus(3_600_000),
        ..good()
    };
    assert_eq!(reason(&two), Some(FaultReason::TooFewSatellites));
}

#[test]
fn default_thresholds() {
    assert_eq!(
        FaultyThresholds::default(),
        FaultyThresholds {
            min_satellites: 3,
            max_future_ms: 60_000,
            // 2010-01-01T00:00:00Z
            min_timestamp: UnixMillis(1_262_304_000_000),
        }
    );
}

#[test]
fn reasons_have_distinct_texts() {
    let texts = [
        FaultReason::NullIsland.as_str(),
        FaultReason::BeforeMinTimestamp.as_str(),
        FaultReason::TooFewSatellites.as_str(),
        FaultReason::InTheFuture.as_str(),
    ];
    for (i, a) in texts.iter().enumerate() {
        assert!(!a.is_empty());
        for b in &texts[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn a_fix_before_the_minimum_timestamp_is_faulty() {
    let thresholds = FaultyThresholds::default();
    let min = FaultyThresholds::DEFAULT_MIN_TIMESTAMP;
    let now = UnixMillis(1_764_324_000_000);
    let at = |ts: i64| {
        let mut p = good();
        p.ts = UnixMillis(ts);
        fault_reason(&p, now, &thresholds)
    };
    assert_eq!(at(0), Some(FaultReason::BeforeMinTimestamp), "1970");
    assert_eq!(
        at(315_964_800_000),
        Some(FaultReason::BeforeMinTimestamp),
        "the GPS epoch, 1980"
    );
    assert_eq!(at(min.as_i64() - 1), Some(FaultReason::BeforeMinTimestamp));
    assert_eq!(at(min.as_i64()), None, "the minimum itself is fine");
}
