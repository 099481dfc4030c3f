//! Generated stream entries, each with the truth the checker judges the run by.
//!
//! Payloads come from a few devices and a small grid of fix times, so the same
//! (device, fix time) key arrives several times with different contents. Some are faulty
//! (at (0, 0), too few satellites, fix time far ahead), some spell the time in RFC 3339,
//! some carry large integer attributes, some come from devices whose id Postgres refuses,
//! and some are not decodable at all.

use std::collections::BTreeMap;

use bytes::Bytes;
use processor_core::Position;
use serde_json::{Map, Value};

use crate::rfc3339;
use crate::rng::SimRng;
use crate::store::{PositionKey, REJECT_MARKER};

/// Simulated time starts here (2025-11-24T16:00:00Z).
pub const T0: u64 = 1_764_000_000_000;

/// What a well-formed payload says.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub device_id: String,
    pub ts: i64,
    pub latitude: f64,
    pub longitude: f64,
    pub speed: f64,
    pub angle: f64,
    pub satellites: u8,
    pub attributes: BTreeMap<String, u64>,
}

impl Truth {
    pub fn key(&self) -> PositionKey {
        (self.device_id.clone(), self.ts)
    }

    /// Postgres will refuse this row whatever happens.
    pub fn rejected_by_store(&self) -> bool {
        self.device_id.contains(REJECT_MARKER)
    }

    /// True when `position` is exactly what this payload says, defaults included.
    pub fn matches(&self, position: &Position) -> bool {
        position.device_id == self.device_id
            && position.ts.as_i64() == self.ts
            && position.latitude == self.latitude
            && position.longitude == self.longitude
            && position.speed == self.speed
            && position.angle == self.angle
            && position.satellites == self.satellites
            && position.altitude == 0.0
            && position.priority == 0
            && position.event_io_id.is_none()
            && position.attributes.len() == self.attributes.len()
            && self.attributes.iter().all(|(k, v)| {
                matches!(
                    position.attributes.get(k),
                    Some(processor_core::AttributeValue::Unsigned(u)) if u == v
                )
            })
    }
}

/// What the processor must make of an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A position, stored (or refused by Postgres, see [`Truth::rejected_by_store`]).
    Position(Truth),
    /// Not decodable; the text names the defect, for messages.
    DecodeError(&'static str),
}

/// One entry to append: its `payload` field (if any) and its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedEntry {
    pub payload: Option<Bytes>,
    pub expected: Expected,
}

/// How the generated traffic is mixed; drawn per seed.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficMix {
    pub devices: usize,
    pub marker_devices: usize,
    /// Distinct fix times per device (1 s apart, from `T0 - 60 s`).
    pub ts_slots: u64,
    pub decode_error_p: f64,
    pub marker_p: f64,
    pub null_island_p: f64,
    pub low_satellites_p: f64,
    pub rfc3339_p: f64,
    pub attributes_p: f64,
}

impl Default for TrafficMix {
    fn default() -> Self {
        TrafficMix {
            devices: 4,
            marker_devices: 1,
            ts_slots: 40,
            decode_error_p: 0.05,
            marker_p: 0.05,
            null_island_p: 0.05,
            low_satellites_p: 0.05,
            rfc3339_p: 0.1,
            attributes_p: 0.3,
        }
    }
}

/// The undecodable kinds generated.
pub const DECODE_ERRORS: [&str; 10] = [
    "no payload field",
    "not UTF-8",
    "not JSON",
    "not an object",
    "missing latitude",
    "latitude out of range",
    "device_id not a string",
    "empty device_id",
    "timestamp before 1970",
    "satellites out of range",
];

/// The generator.
#[derive(Debug, Clone)]
pub struct Traffic {
    mix: TrafficMix,
}

impl Traffic {
    pub fn new(mix: TrafficMix) -> Traffic {
        Traffic { mix }
    }

    pub fn mix(&self) -> &TrafficMix {
        &self.mix
    }

    pub fn generate(&self, rng: &mut SimRng) -> GeneratedEntry {
        if rng.chance(self.mix.decode_error_p) {
            let kind = DECODE_ERRORS[rng.index(DECODE_ERRORS.len())];
            let truth = self.truth(rng, false);
            return decode_error_entry(kind, &truth);
        }
        let marker = self.mix.marker_devices > 0 && rng.chance(self.mix.marker_p);
        let truth = self.truth(rng, marker);
        let spelling = if rng.chance(self.mix.rfc3339_p) {
            Some([0, 60, -300, 330][rng.index(4)])
        } else {
            None
        };
        position_entry(&truth, spelling, rng.chance(0.1))
    }

    fn truth(&self, rng: &mut SimRng, marker: bool) -> Truth {
        let device_id = if marker {
            marker_device(rng.index(self.mix.marker_devices.max(1)))
        } else {
            device(rng.index(self.mix.devices.max(1)))
        };
        let slot = rng.below(self.mix.ts_slots.max(1));
        let (latitude, longitude) = if rng.chance(self.mix.null_island_p) {
            (0.0, 0.0)
        } else {
            (
                rng.range_i64(-899_999, 899_999) as f64 / 10_000.0,
                rng.range_i64(-1_799_999, 1_799_999) as f64 / 10_000.0,
            )
        };
        let satellites = if rng.chance(self.mix.low_satellites_p) {
            rng.range(0, 2) as u8
        } else {
            rng.range(3, 20) as u8
        };
        let mut attributes = BTreeMap::new();
        if rng.chance(self.mix.attributes_p) {
            attributes.insert("odometer".to_owned(), u64::MAX - rng.below(1_000));
            attributes.insert("ignition".to_owned(), rng.below(2));
        }
        Truth {
            device_id,
            ts: (T0 - 60_000 + slot * 1_000) as i64,
            latitude,
            longitude,
            speed: rng.below(2_000) as f64 / 10.0,
            angle: rng.below(360) as f64,
            satellites,
            attributes,
        }
    }
}

/// An ordinary device id (an IMEI).
pub fn device(i: usize) -> String {
    format!("35630704244{:04}", i % 10_000)
}

/// A device id Postgres refuses.
pub fn marker_device(i: usize) -> String {
    format!("35630704244{REJECT_MARKER}{:03}", i % 1_000)
}

fn fields(truth: &Truth, rfc3339_offset: Option<i32>, unknown_field: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("device_id".into(), Value::from(truth.device_id.clone()));
    let ts = match rfc3339_offset {
        Some(offset) => Value::from(rfc3339::format(truth.ts, offset)),
        None => Value::from(truth.ts),
    };
    m.insert("timestamp".into(), ts);
    m.insert("latitude".into(), Value::from(truth.latitude));
    m.insert("longitude".into(), Value::from(truth.longitude));
    m.insert("speed".into(), Value::from(truth.speed));
    if truth.angle != 0.0 {
        m.insert("angle".into(), Value::from(truth.angle));
    }
    m.insert("satellites".into(), Value::from(truth.satellites));
    if !truth.attributes.is_empty() {
        let attrs: Map<String, Value> = truth
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect();
        m.insert("attributes".into(), Value::Object(attrs));
    }
    if unknown_field {
        m.insert("gateway".into(), Value::from("gw-1"));
    }
    m
}

fn to_bytes(m: Map<String, Value>) -> Option<Bytes> {
    Some(Bytes::from(Value::Object(m).to_string()))
}

/// A well-formed payload for `truth`; its fix time as an integer, or in RFC 3339 with this
/// offset in minutes.
pub fn position_entry(
    truth: &Truth,
    rfc3339_offset: Option<i32>,
    unknown_field: bool,
) -> GeneratedEntry {
    GeneratedEntry {
        payload: to_bytes(fields(truth, rfc3339_offset, unknown_field)),
        expected: Expected::Position(truth.clone()),
    }
}

/// An undecodable entry of the given kind (one of [`DECODE_ERRORS`]), built around `truth`.
pub fn decode_error_entry(kind: &'static str, truth: &Truth) -> GeneratedEntry {
    let mut m = fields(truth, None, false);
    let payload = match kind {
        "no payload field" => None,
        "not UTF-8" => Some(Bytes::from_static(b"{\"device_id\":\"\xff\xfe\"}")),
        "not JSON" => Some(Bytes::from_static(b"{\"device_id\": \"3563")),
        "not an object" => Some(Bytes::from_static(b"[1,2,3]")),
        "missing latitude" => {
            m.remove("latitude");
            to_bytes(m)
        }
        "latitude out of range" => {
            m.insert("latitude".into(), Value::from(91.5));
            to_bytes(m)
        }
        "device_id not a string" => {
            m.insert("device_id".into(), Value::from(356_307_042_441_013u64));
            to_bytes(m)
        }
        "empty device_id" => {
            m.insert("device_id".into(), Value::from(""));
            to_bytes(m)
        }
        "timestamp before 1970" => {
            m.insert("timestamp".into(), Value::from(-1));
            to_bytes(m)
        }
        "satellites out of range" => {
            m.insert("satellites".into(), Value::from(300));
            to_bytes(m)
        }
        other => panic!("unknown decode error kind {other}"),
    };
    GeneratedEntry {
        payload,
        expected: Expected::DecodeError(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use processor_core::decode_position;

    #[test]
    fn generated_payloads_decode_to_their_truth() {
        let traffic = Traffic::new(TrafficMix {
            decode_error_p: 0.3,
            marker_p: 0.2,
            rfc3339_p: 0.5,
            ..TrafficMix::default()
        });
        let mut rng = SimRng::new(3);
        let (mut good, mut bad) = (0, 0);
        for _ in 0..2_000 {
            let e = traffic.generate(&mut rng);
            let decoded = e.payload.as_deref().map(decode_position);
            match &e.expected {
                Expected::Position(t) => {
                    let p = decoded.unwrap().unwrap();
                    assert!(t.matches(&p), "{t:?} vs {p:?}");
                    good += 1;
                }
                Expected::DecodeError(kind) => {
                    assert!(!matches!(decoded, Some(Ok(_))), "{kind} decoded");
                    bad += 1;
                }
            }
        }
        assert!(good > 1_000 && bad > 300);
    }
}
