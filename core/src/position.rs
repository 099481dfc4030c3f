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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_attributes(attributes: &[(&str, AttributeValue)]) -> Position {
        Position {
            device_id: "A".into(),
            ts: UnixMillis(0),
            latitude: 54.0,
            longitude: 25.0,
            altitude: 0.0,
            angle: 0.0,
            speed: 0.0,
            satellites: 9,
            priority: 0,
            event_io_id: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn attributes_json_is_one_object_with_each_value_as_its_json_scalar() {
        let p = with_attributes(&[
            ("ignition", AttributeValue::Bool(true)),
            ("din2", AttributeValue::Bool(false)),
            // Exact at the ends of the integer range: a float would round these.
            ("odometer", AttributeValue::Unsigned(u64::MAX)),
            ("zero", AttributeValue::Unsigned(0)),
            ("offset", AttributeValue::Signed(i64::MIN)),
            ("temp", AttributeValue::Float(-12.5)),
            ("iccid", AttributeValue::Text("8937204016201449510".into())),
        ]);
        let expected = json!({
            "ignition": true,
            "din2": false,
            "odometer": u64::MAX,
            "zero": 0,
            "offset": i64::MIN,
            "temp": -12.5,
            "iccid": "8937204016201449510",
        });
        assert_eq!(p.attributes_json(), expected);
        assert_eq!(
            p.attributes_json().to_string(),
            r#"{"din2":false,"iccid":"8937204016201449510","ignition":true,"odometer":18446744073709551615,"offset":-9223372036854775808,"temp":-12.5,"zero":0}"#
        );
        // The storage path serialises the map directly; both forms must agree.
        assert_eq!(serde_json::to_value(&p.attributes).unwrap(), expected);
    }

    #[test]
    fn a_float_json_cannot_carry_is_null_and_no_attributes_is_an_empty_object() {
        let p = with_attributes(&[("bad", AttributeValue::Float(f64::NAN))]);
        assert_eq!(p.attributes_json(), json!({ "bad": null }));
        assert_eq!(with_attributes(&[]).attributes_json(), json!({}));
    }
}
