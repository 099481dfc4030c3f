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
