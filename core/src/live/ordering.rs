//! The live path's per-device rules (contract section 4): fix times only move forward, and
//! no jump faster than `FAULTY_MAX_SPEED_KMH`, with a way back from a bad anchor.
//!
//! Both rules judge a fix against the device's *anchor*, the last fix the live path
//! accepted, and apply whether or not anyone is subscribed, so that every instance (each
//! sees every record) keeps the same anchors.
//!
//! The jump rule alone can lock a device out for good: once the anchor is wrong (a glitch
//! that passed, or a device carried far while off), every correct fix is "too far" from it.
//! Two ways out, both judged in fix time so that replaying a stream gives the same result:
//! - **gap**: a too-fast fix more than `reanchor_gap_ms` after the anchor is accepted, the
//!   anchor being too old to say where the device can be;
//! - **agreement**: after `reanchor_after_fixes` consecutive too-fast fixes that agree with
//!   each other (each within the speed limit from the one before it), the last one is
//!   accepted. Isolated glitches do not agree with each other, so they stay dropped; a
//!   device that really is elsewhere produces a consistent track and is re-anchored there.

use std::collections::BTreeMap;

use crate::wire::WirePosition;
use crate::{Position, UnixMillis};

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6_371.008_8;
const MS_PER_HOUR: f64 = 3_600_000.0;

/// The parts of an accepted fix the live path keeps: enough to judge the next fix and to
/// put the device into a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fix {
    pub ts: UnixMillis,
    pub lat: f64,
    pub lon: f64,
    pub speed: f64,
    pub course: f64,
}

impl Fix {
    pub(crate) fn of(p: &Position) -> Fix {
        Fix {
            ts: p.ts,
            lat: p.latitude,
            lon: p.longitude,
            speed: p.speed,
            course: p.angle,
        }
    }

    pub(crate) fn to_wire(self, device_id: &str) -> WirePosition {
        WirePosition {
            device_id: device_id.to_owned(),
            lat: self.lat,
            lon: self.lon,
            ts: self.ts.as_i64(),
            speed: self.speed,
            course: self.course,
        }
    }
}

/// What the per-device rules made of a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Newer than the anchor and within the speed limit (or the device's first fix).
    Accepted,
    /// Too fast, but accepted as the new anchor (see the module docs).
    Reanchored,
    /// Not newer than the anchor.
    Stale,
    /// Too fast from the anchor.
    Jump,
}

/// The jump rule's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JumpRule {
    pub max_speed_kmh: f64,
    pub reanchor_gap_ms: u64,
    pub reanchor_after_fixes: u32,
}

impl JumpRule {
    /// True when going from `a` to `b` (`b` later) is faster than the limit.
    fn too_fast(&self, a: &Fix, b: &Fix) -> bool {
        let hours = b.ts.since(a.ts) as f64 / MS_PER_HOUR;
        // Written as a product: no division by a tiny interval, and a NaN limit (never
        // configured so) would simply let everything through.
        distance_km(a, b) > self.max_speed_kmh * hours
    }
}

#[derive(Debug, Clone)]
struct DeviceTrack {
    anchor: Fix,
    /// The last too-fast fix and how many agreeing too-fast fixes end with it.
    suspect: Option<(Fix, u32)>,
}

/// The anchors of every device seen, with the rules that move them.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    rule: JumpRule,
    devices: BTreeMap<String, DeviceTrack>,
}

impl Tracker {
    pub(crate) fn new(rule: JumpRule) -> Tracker {
        Tracker {
            rule,
            devices: BTreeMap::new(),
        }
    }

    /// Judges `p` (already known not to be faulty) and moves the anchor when it is accepted.
    pub(crate) fn judge(&mut self, p: &Position) -> Verdict {
        self.judge_fix(&p.device_id, Fix::of(p))
    }

    /// [`judge`](Self::judge) for a fix of `device`.
    pub(crate) fn judge_fix(&mut self, device: &str, fix: Fix) -> Verdict {
        let Some(track) = self.devices.get_mut(device) else {
            self.devices.insert(
                device.to_owned(),
                DeviceTrack {
                    anchor: fix,
                    suspect: None,
                },
            );
            return Verdict::Accepted;
        };
        if fix.ts <= track.anchor.ts {
            return Verdict::Stale;
        }
        if !self.rule.too_fast(&track.anchor, &fix) {
            *track = DeviceTrack {
                anchor: fix,
                suspect: None,
            };
            return Verdict::Accepted;
        }
        let gap = u64::try_from(fix.ts.since(track.anchor.ts)).unwrap_or(0);
        let run = match track.suspect {
            Some((s, run)) if fix.ts > s.ts && !self.rule.too_fast(&s, &fix) => run + 1,
            _ => 1,
        };
        let agreed = self.rule.reanchor_after_fixes > 0 && run >= self.rule.reanchor_after_fixes;
        if gap > self.rule.reanchor_gap_ms || agreed {
            *track = DeviceTrack {
                anchor: fix,
                suspect: None,
            };
            Verdict::Reanchored
        } else {
            track.suspect = Some((fix, run));
            Verdict::Jump
        }
    }
}

/// Great-circle distance (haversine), km.
fn distance_km(a: &Fix, b: &Fix) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(ts: i64, lat: f64, lon: f64) -> Fix {
        Fix {
            ts: UnixMillis(ts),
            lat,
            lon,
            speed: 0.0,
            course: 0.0,
        }
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_km(&fix(0, 54.0, 25.0), &fix(0, 55.0, 25.0));
        assert!((d - 111.19).abs() < 0.05, "{d}");
    }

    /// Independent of `distance_km`: the spherical law of cosines, on the same sphere.
    /// (Ill-conditioned for tiny distances, exact enough for the degree-sized ones here.)
    fn law_of_cosines_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
        let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
        let dl = (lon2 - lon1).to_radians();
        let c = (p1.sin() * p2.sin() + p1.cos() * p2.cos() * dl.cos()).clamp(-1.0, 1.0);
        EARTH_RADIUS_KM * c.acos()
    }

    /// The distance from (lat1, lon1) to (lat2, lon2) and back must both be `expected`.
    fn assert_distance(lat1: f64, lon1: f64, lat2: f64, lon2: f64, expected: f64) {
        let there = distance_km(&fix(0, lat1, lon1), &fix(0, lat2, lon2));
        let back = distance_km(&fix(0, lat2, lon2), &fix(0, lat1, lon1));
        for d in [there, back] {
            assert!(
                (d - expected).abs() < 1e-6,
                "({lat1}, {lon1}) to ({lat2}, {lon2}): {d} km, expected {expected} km"
            );
        }
    }

    // The tests of the live path move devices in latitude only; a haversine with a wrong
    // sign in its longitude term would make every east-west move a jump of thousands of
    // km. So: known distances in every direction, each way.

    #[test]
    fn one_degree_east_west_on_the_equator_is_an_arc_of_one_degree() {
        // Along the equator the great circle is the equator: R times the angle, 111.195 km.
        let arc = EARTH_RADIUS_KM * 1f64.to_radians();
        assert!((arc - 111.195).abs() < 0.001, "{arc}");
        assert_distance(0.0, 25.0, 0.0, 26.0, arc);
        assert_distance(0.0, -0.5, 0.0, 0.5, arc);
        // Across the antimeridian the short way round is still one degree.
        assert_distance(0.0, 179.5, 0.0, -179.5, arc);
    }

    #[test]
    fn one_degree_east_west_at_54_north_is_about_65_km() {
        let expected = law_of_cosines_km(54.0, 25.0, 54.0, 26.0);
        // cos 54 deg x 111.195 km = 65.36 km along the parallel; the great circle is a
        // hair shorter.
        assert!((expected - 65.36).abs() < 0.01, "{expected}");
        assert_distance(54.0, 25.0, 54.0, 26.0, expected);
        assert_distance(-54.0, -70.0, -54.0, -71.0, expected);
    }

    #[test]
    fn north_south_moves_are_arcs_of_the_meridian() {
        let arc = EARTH_RADIUS_KM * 1f64.to_radians();
        assert_distance(54.0, 25.0, 55.0, 25.0, arc);
        assert_distance(-10.0, -60.0, -11.0, -60.0, arc);
        assert_distance(-0.5, 10.0, 0.5, 10.0, arc);
        assert_distance(10.0, 0.0, 40.0, 0.0, 30.0 * arc);
    }

    #[test]
    fn diagonal_moves_match_the_law_of_cosines() {
        for (lat1, lon1, lat2, lon2) in [
            (54.0, 25.0, 55.0, 27.0),
            (54.68, 25.28, 54.0, 23.5),
            (-33.9, 18.4, -26.2, 28.0),
            (40.0, -74.0, 51.5, -0.1),
        ] {
            let expected = law_of_cosines_km(lat1, lon1, lat2, lon2);
            assert_distance(lat1, lon1, lat2, lon2, expected);
        }
        // A published figure as a sanity check of the reference itself: New York to London
        // is about 5,570 km on the sphere.
        let ny_london = law_of_cosines_km(40.7128, -74.006, 51.5074, -0.1278);
        assert!((ny_london - 5_570.0).abs() < 10.0, "{ny_london}");
    }

    #[test]
    fn the_same_place_is_no_distance() {
        assert_eq!(distance_km(&fix(0, 54.7, 25.3), &fix(0, 54.7, 25.3)), 0.0);
    }

    fn rule(max_speed_kmh: f64) -> JumpRule {
        JumpRule {
            max_speed_kmh,
            reanchor_gap_ms: u64::MAX,
            reanchor_after_fixes: 0,
        }
    }

    #[test]
    fn an_east_west_move_within_the_limit_passes_and_one_just_over_it_does_not() {
        for (lat, d) in [
            (0.0, EARTH_RADIUS_KM * 1f64.to_radians()),
            (54.0, law_of_cosines_km(54.0, 25.0, 54.0, 26.0)),
        ] {
            let (west, east) = (fix(0, lat, 25.0), fix(3_600_000, lat, 26.0));
            // One degree in one hour: allowed at 0.1 % above that speed, not at 0.1 % below.
            assert!(!rule(d * 1.001).too_fast(&west, &east), "lat {lat}");
            assert!(rule(d * 0.999).too_fast(&west, &east), "lat {lat}");
            // The same in half an hour takes twice the speed: the time scales the limit.
            let (west, east) = (fix(0, lat, 26.0), fix(1_800_000, lat, 25.0));
            assert!(!rule(2.0 * d * 1.001).too_fast(&west, &east), "lat {lat}");
            assert!(rule(2.0 * d * 0.999).too_fast(&west, &east), "lat {lat}");
        }
    }

    #[test]
    fn a_move_at_exactly_the_limit_passes() {
        let (a, b) = (fix(0, 54.0, 25.0), fix(3_600_000, 54.3, 25.9));
        // The limit is the move's own speed over exactly one hour: at it, not over it.
        let limit = distance_km(&a, &b);
        assert!(!rule(limit).too_fast(&a, &b));
        // One millisecond sooner is over it; one later is under it.
        assert!(rule(limit).too_fast(&a, &fix(3_599_999, 54.3, 25.9)));
        assert!(!rule(limit).too_fast(&a, &fix(3_600_001, 54.3, 25.9)));
        // Standing still with no speed allowed at all is not too fast either.
        assert!(!rule(0.0).too_fast(&a, &fix(1, 54.0, 25.0)));
    }

    fn position(ts: i64, lat: f64, lon: f64) -> Position {
        Position {
            device_id: "A".into(),
            ts: UnixMillis(ts),
            latitude: lat,
            longitude: lon,
            altitude: 0.0,
            angle: 0.0,
            speed: 0.0,
            satellites: 9,
            priority: 0,
            event_io_id: None,
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn a_fix_at_the_anchor_time_is_stale_and_one_ms_later_is_not() {
        let mut t = Tracker::new(rule(100.0));
        assert_eq!(t.judge(&position(1_000, 54.0, 25.0)), Verdict::Accepted);
        // The same fix again (a resent record): not newer, whatever its place.
        assert_eq!(t.judge(&position(1_000, 54.0, 25.0)), Verdict::Stale);
        assert_eq!(t.judge(&position(999, 54.0, 25.0)), Verdict::Stale);
        assert_eq!(t.judge(&position(1_001, 54.0, 25.0)), Verdict::Accepted);
    }

    #[test]
    fn an_east_west_move_is_judged_by_its_real_length() {
        // 100 km/h; one degree east at 54 N (65.4 km) in 40 minutes is 98 km/h: accepted.
        // A haversine off in its longitude term would call it a jump.
        let mut t = Tracker::new(rule(100.0));
        assert_eq!(t.judge(&position(0, 54.0, 25.0)), Verdict::Accepted);
        assert_eq!(
            t.judge(&position(40 * 60_000, 54.0, 26.0)),
            Verdict::Accepted
        );
        // One more degree in 38 minutes is 103 km/h: a jump.
        assert_eq!(t.judge(&position(78 * 60_000, 54.0, 27.0)), Verdict::Jump);
    }

    /// 100 km/h; a fix one degree of latitude (111 km) from (0, 0) within seconds is a jump.
    const FAR: f64 = 1.0;

    #[test]
    fn a_jump_re_anchors_only_once_the_gap_is_over_the_limit() {
        let gap_rule = JumpRule {
            reanchor_gap_ms: 10_000,
            ..rule(100.0)
        };
        let mut t = Tracker::new(gap_rule);
        assert_eq!(t.judge(&position(0, 0.0, 0.0)), Verdict::Accepted);
        // Exactly the gap after the anchor: not more than it.
        assert_eq!(t.judge(&position(10_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(10_001, FAR, 0.0)), Verdict::Reanchored);
        // Anchored there now.
        assert_eq!(t.judge(&position(10_002, FAR, 0.0)), Verdict::Accepted);
    }

    fn agreeing(after: u32) -> Tracker {
        Tracker::new(JumpRule {
            reanchor_after_fixes: after,
            ..rule(100.0)
        })
    }

    #[test]
    fn exactly_n_agreeing_jumps_re_anchor() {
        let mut t = agreeing(3);
        assert_eq!(t.judge(&position(0, 0.0, 0.0)), Verdict::Accepted);
        assert_eq!(t.judge(&position(1_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(2_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(3_000, FAR, 0.0)), Verdict::Reanchored);
        assert_eq!(t.judge(&position(4_000, FAR, 0.0)), Verdict::Accepted);
    }

    #[test]
    fn a_resent_suspect_does_not_count_as_a_second_agreeing_fix() {
        // Two agreeing fixes re-anchor; the same too-fast record twice (same fix time) is
        // one fix, not two, so a tracker resending a glitch does not move its anchor.
        let mut t = agreeing(2);
        assert_eq!(t.judge(&position(0, 0.0, 0.0)), Verdict::Accepted);
        assert_eq!(t.judge(&position(1_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(1_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(1_001, FAR, 0.0)), Verdict::Reanchored);
    }

    #[test]
    fn disagreeing_jumps_start_the_count_over() {
        let mut t = agreeing(2);
        assert_eq!(t.judge(&position(0, 0.0, 0.0)), Verdict::Accepted);
        assert_eq!(t.judge(&position(1_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(2_000, -FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(3_000, FAR, 0.0)), Verdict::Jump);
        assert_eq!(t.judge(&position(4_000, FAR, 0.0)), Verdict::Reanchored);
    }

    #[test]
    fn no_agreement_re_anchors_when_it_is_disabled() {
        let mut t = agreeing(0);
        assert_eq!(t.judge(&position(0, 0.0, 0.0)), Verdict::Accepted);
        for ts in 1..=5 {
            assert_eq!(t.judge(&position(ts * 1_000, FAR, 0.0)), Verdict::Jump);
        }
    }

    #[test]
    fn speed_limit_is_inclusive() {
        let rule = JumpRule {
            max_speed_kmh: 111.2,
            reanchor_gap_ms: u64::MAX,
            reanchor_after_fixes: 0,
        };
        // About 111.19 km in one hour.
        assert!(!rule.too_fast(&fix(0, 54.0, 25.0), &fix(3_600_000, 55.0, 25.0)));
        assert!(rule.too_fast(&fix(0, 54.0, 25.0), &fix(3_500_000, 55.0, 25.0)));
    }
}
