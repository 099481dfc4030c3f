//! A decoded tracker position.

use std::collections::BTreeMap;

use crate::UnixMillis;

/// One GPS record from a tracker, as decoded from a stream payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// Tracker identity, 1 to 64 characters (an IMEI in practice).
    pub device_id: String,
    /// GPS fix time.
    pub ts: UnixMillis,
    /// Degrees in [-90, 90].
    pub latitude: f64,
    /// Degrees in [-180, 180].
    pub longitude: f64,
    /// Metres.
    pub altitude: f64,
    /// Course in degrees, [0, 360].
    pub angle: f64,
    /// km/h, >= 0.
    pub speed: f64,
    pub satellites: u8,
    /// Teltonika record priority, 0..=2.
    pub priority: u8,
    /// IO element that triggered the record, when the tracker said.
    pub event_io_id: Option<i32>,
    /// IO elements; sorted by key so their JSON form is deterministic.
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// The value of one IO element.
///
/// Integers keep their exact value up to `u64::MAX` (and down to `i64::MIN`): a float would
/// round odometers and ICCIDs.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Bool(bool),
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Signed(i64),
    Float(f64),
    Text(String),
}

impl AttributeValue {
    /// The JSON value this attribute stands for.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AttributeValue::Bool(b) => serde_json::Value::Bool(*b),
            AttributeValue::Unsigned(u) => serde_json::Value::from(*u),
            AttributeValue::Signed(i) => serde_json::Value::from(*i),
            AttributeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            AttributeValue::Text(s) => serde_json::Value::String(s.clone()),
        }
    }
}

impl Position {
    /// The attributes as one JSON object, for storage.
    pub fn attributes_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// True when the position sits at (0, 0), the classic no-fix placeholder.
    pub fn is_null_island(&self) -> bool {
        self.latitude == 0.0 && self.longitude == 0.0
    }
}

/// Serialises as the plain JSON scalar, so the attributes map can be written as a JSON
/// object without building an intermediate `serde_json::Value`.
impl serde::Serialize for AttributeValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttributeValue::Bool(b) => s.serialize_bool(*b),
            AttributeValue::Unsigned(u) => s.serialize_u64(*u),
            AttributeValue::Signed(i) => s.serialize_i64(*i),
            AttributeValue::Float(f) => s.serialize_f64(*f),
            AttributeValue::Text(t) => s.serialize_str(t),
        }
    }
}
