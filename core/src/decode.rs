//! Decoding of stream payloads (contract section 3).
//!
//! The decoder checks every field the contract names and reports the first problem it finds
//! with the field's name. Errors never carry the payload itself, only field names and the
//! rule that was broken, so they are safe to log and to put into the dead-letter stream.

use std::collections::BTreeMap;

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{AttributeValue, Position, UnixMillis};

/// Payloads above this size are rejected before parsing.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Longest device id accepted, in characters.
pub const MAX_DEVICE_ID_CHARS: usize = 64;

/// Attribute keys echoed in error messages are cut to this many characters.
const MAX_ECHOED_KEY_CHARS: usize = 32;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("entry has no payload field")]
    MissingPayload,
    #[error("payload is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is not a JSON object")]
    NotAnObject,
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` {problem}")]
    InvalidField {
        field: String,
        problem: &'static str,
    },
}

impl CodecError {
    fn field(field: &str, problem: &'static str) -> CodecError {
        CodecError::InvalidField {
            field: field.to_owned(),
            problem,
        }
    }
}

/// Decodes one stream payload into a [`Position`].
///
/// Unknown fields are ignored. See the contract, section 3, for every rule applied here.
pub fn decode_position(payload: &[u8]) -> Result<Position, CodecError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(CodecError::TooLarge {
            size: payload.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|_| CodecError::NotUtf8)?;
    if !text.trim_start().starts_with('{') {
        // serde would take an array for a struct; tell "not JSON" from "not an object".
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => CodecError::NotAnObject,
            Err(e) => CodecError::InvalidJson(syntax_error(&e)),
        });
    }
    let fields: Fields =
        serde_json::from_str(text).map_err(|e| CodecError::InvalidJson(syntax_error(&e)))?;
    decode_fields(fields)
}

/// The contract's fields, each kept as whatever JSON it was so that the checks below can
/// name the field that is wrong. Unknown fields are skipped without being built, and
/// attributes are checked as they are read rather than built as JSON first.
#[derive(Deserialize)]
struct Fields {
    device_id: Option<Value>,
    timestamp: Option<Value>,
    latitude: Option<Value>,
    longitude: Option<Value>,
    altitude: Option<Value>,
    angle: Option<Value>,
    speed: Option<Value>,
    satellites: Option<Value>,
    priority: Option<Value>,
    event_io_id: Option<Value>,
    attributes: Option<Attributes>,
}

/// The `attributes` field: an object whose values are checked one by one, or anything else.
enum Attributes {
    Object(Vec<(String, Result<AttributeValue, &'static str>)>),
    Null,
    NotAnObject,
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AttributesVisitor)
    }
}

struct AttributesVisitor;

impl<'de> Visitor<'de> for AttributesVisitor {
    type Value = Attributes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let AttributeSlot(value) = map.next_value()?;
            out.push((key, value));
        }
        Ok(Attributes::Object(out))
    }

    fn visit_unit<E>(self) -> Result<Attributes, E> {
        Ok(Attributes::Null)
    }

    fn visit_none<E>(self) -> Result<Attributes, E> {
        Ok(Attributes::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Attributes, E> {
        Ok(Attributes::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Attributes, E> {
        Ok(Attributes::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Attributes, E> {
        Ok(Attributes::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Attributes, E> {
        Ok(Attributes::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Attributes, E> {
        Ok(Attributes::NotAnObject)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Attributes, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Attributes::NotAnObject)
    }
}

/// One attribute value, or why it is not acceptable.
struct AttributeSlot(Result<AttributeValue, &'static str>);

const NOT_SCALAR: &str = "must be a number, a string or a boolean";

impl<'de> Deserialize<'de> for AttributeSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AttributeSlotVisitor)
    }
}

struct AttributeSlotVisitor;

impl<'de> Visitor<'de> for AttributeSlotVisitor {
    type Value = AttributeSlot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a string or a boolean")
    }

    fn visit_bool<E>(self, v: bool) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(Ok(AttributeValue::Bool(v))))
    }

    fn visit_u64<E>(self, v: u64) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(Ok(AttributeValue::Unsigned(v))))
    }

    fn visit_i64<E>(self, v: i64) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(Ok(if v >= 0 {
            AttributeValue::Unsigned(v as u64)
        } else {
            AttributeValue::Signed(v)
        })))
    }

    fn visit_f64<E>(self, v: f64) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(if v.is_finite() {
            Ok(AttributeValue::Float(v))
        } else {
            Err("must be a finite number")
        }))
    }

    fn visit_str<E>(self, v: &str) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(Ok(AttributeValue::Text(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(Ok(AttributeValue::Text(v))))
    }

    fn visit_unit<E>(self) -> Result<AttributeSlot, E> {
        Ok(AttributeSlot(Err(NOT_SCALAR)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttributeSlot, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AttributeSlot(Err(NOT_SCALAR)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeSlot, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AttributeSlot(Err(NOT_SCALAR)))
    }
}

/// serde_json's message for a syntax error names a line and column, never the input; keep
/// only the category and position so nothing of the payload can leak.
fn syntax_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn decode_fields(f: Fields) -> Result<Position, CodecError> {
    let device_id = device_id(required(f.device_id.as_ref(), "device_id")?)?;
    let ts = timestamp(required(f.timestamp.as_ref(), "timestamp")?)?;
    let latitude = number_in(
        required(f.latitude.as_ref(), "latitude")?,
        "latitude",
        -90.0,
        90.0,
    )?;
    let longitude = number_in(
        required(f.longitude.as_ref(), "longitude")?,
        "longitude",
        -180.0,
        180.0,
    )?;
    let altitude = optional(f.altitude.as_ref())
        .map(|v| number(v, "altitude"))
        .transpose()?
        .unwrap_or(0.0);
    let angle = optional(f.angle.as_ref())
        .map(|v| number_in(v, "angle", 0.0, 360.0))
        .transpose()?
        .unwrap_or(0.0);
    let speed = optional(f.speed.as_ref())
        .map(|v| number_in(v, "speed", 0.0, f64::MAX))
        .transpose()?
        .unwrap_or(0.0);
    let satellites = optional(f.satellites.as_ref())
        .map(|v| integer_in(v, "satellites", 0, 255))
        .transpose()?
        .unwrap_or(0) as u8;
    let priority = optional(f.priority.as_ref())
        .map(|v| integer_in(v, "priority", 0, 2))
        .transpose()?
        .unwrap_or(0) as u8;
    let event_io_id = optional(f.event_io_id.as_ref())
        .map(|v| integer_in(v, "event_io_id", 0, i32::MAX as i64))
        .transpose()?
        .map(|v| v as i32);
    let attributes = match f.attributes {
        None | Some(Attributes::Null) => BTreeMap::new(),
        Some(Attributes::NotAnObject) => {
            return Err(CodecError::field("attributes", "must be an object"))
        }
        Some(Attributes::Object(entries)) => attributes(entries)?,
    };
    Ok(Position {
        device_id,
        ts,
        latitude,
        longitude,
        altitude,
        angle,
        speed,
        satellites,
        priority,
        event_io_id,
        attributes,
    })
}

fn required<'a>(field: Option<&'a Value>, name: &'static str) -> Result<&'a Value, CodecError> {
    match field {
        None | Some(Value::Null) => Err(CodecError::MissingField(name)),
        Some(v) => Ok(v),
    }
}

/// An optional field given as `null` counts as absent: gateways commonly serialise missing
/// values that way.
fn optional(field: Option<&Value>) -> Option<&Value> {
    field.filter(|v| !v.is_null())
}

fn device_id(v: &Value) -> Result<String, CodecError> {
    let Value::String(s) = v else {
        return Err(CodecError::field("device_id", "must be a string"));
    };
    check_device_id(s).map_err(|problem| CodecError::field("device_id", problem))?;
    Ok(s.clone())
}

/// The device id rule of contract section 3: 1 to 64 characters, none of them a control
/// character. Shared with the admin commands, so that every id the stream can carry can be
/// assigned to an entry and no other can.
pub fn check_device_id(s: &str) -> Result<(), &'static str> {
    let chars = s.chars().count();
    if chars == 0 {
        return Err("must not be empty");
    }
    if chars > MAX_DEVICE_ID_CHARS {
        return Err("must be at most 64 characters");
    }
    if s.chars().any(is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

fn timestamp(v: &Value) -> Result<UnixMillis, CodecError> {
    let ms = match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                i64::try_from(u).unwrap_or(i64::MAX)
            } else if n.as_i64().is_some() {
                return Err(CodecError::field("timestamp", "must not be before 1970"));
            } else {
                return Err(CodecError::field(
                    "timestamp",
                    "must be integer epoch milliseconds or an RFC 3339 string",
                ));
            }
        }
        Value::String(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|_| CodecError::field("timestamp", "is not a valid RFC 3339 date-time"))?;
            // Sub-millisecond digits are truncated toward the past, like the integer form.
            let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
            i64::try_from(ms).map_err(|_| CodecError::field("timestamp", "is out of range"))?
        }
        _ => {
            return Err(CodecError::field(
                "timestamp",
                "must be integer epoch milliseconds or an RFC 3339 string",
            ))
        }
    };
    if ms < 0 {
        return Err(CodecError::field("timestamp", "must not be before 1970"));
    }
    if ms > UnixMillis::MAX_FIX.as_i64() {
        return Err(CodecError::field(
            "timestamp",
            "must not be after year 9999",
        ));
    }
    Ok(UnixMillis(ms))
}

fn number(v: &Value, field: &'static str) -> Result<f64, CodecError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| CodecError::field(field, "must be a finite number")),
        _ => Err(CodecError::field(field, "must be a number")),
    }
}

fn number_in(v: &Value, field: &'static str, min: f64, max: f64) -> Result<f64, CodecError> {
    let f = number(v, field)?;
    if f < min || f > max {
        return Err(CodecError::field(field, range_problem(field)));
    }
    Ok(f)
}

fn range_problem(field: &str) -> &'static str {
    match field {
        "latitude" => "must be within [-90, 90]",
        "longitude" => "must be within [-180, 180]",
        "angle" => "must be within [0, 360]",
        "speed" => "must not be negative",
        "satellites" => "must be an integer within 0..=255",
        "priority" => "must be an integer within 0..=2",
        "event_io_id" => "must be an integer within 0..=2147483647",
        _ => "is out of range",
    }
}

fn integer_in(v: &Value, field: &'static str, min: i64, max: i64) -> Result<i64, CodecError> {
    let Value::Number(n) = v else {
        return Err(CodecError::field(field, "must be an integer"));
    };
    if let Some(i) = n.as_i64() {
        if (min..=max).contains(&i) {
            return Ok(i);
        }
        return Err(CodecError::field(field, range_problem(field)));
    }
    if n.as_u64().is_some() {
        return Err(CodecError::field(field, range_problem(field)));
    }
    Err(CodecError::field(field, "must be an integer"))
}

fn attributes(
    entries: Vec<(String, Result<AttributeValue, &'static str>)>,
) -> Result<BTreeMap<String, AttributeValue>, CodecError> {
    entries
        .into_iter()
        .map(|(key, value)| {
            let value = value.and_then(|v| match &v {
                AttributeValue::Text(text) if text.contains('\0') => Err(NUL_PROBLEM),
                _ => Ok(v),
            });
            match value {
                Ok(_) if key.contains('\0') => Err(CodecError::InvalidField {
                    field: attribute_field(&key),
                    problem: "key must not contain U+0000",
                }),
                Ok(value) => Ok((key, value)),
                Err(problem) => Err(CodecError::InvalidField {
                    field: attribute_field(&key),
                    problem,
                }),
            }
        })
        .collect()
}

/// Postgres refuses U+0000 in `text` and in `jsonb` strings (SQLSTATE 22021 / 22P05): what
/// the decoder accepts must be storable, or a deterministic error becomes redeliveries.
const NUL_PROBLEM: &str = "must not contain U+0000";

/// U+0000 to U+001F and U+007F (contract section 3).
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}')
}

fn attribute_field(key: &str) -> String {
    let mut name = String::from("attributes.");
    // The key is echoed in logs and dead letters: control characters are shown escaped.
    for c in key.chars().take(MAX_ECHOED_KEY_CHARS) {
        if is_control(c) {
            name.extend(c.escape_default());
        } else {
            name.push(c);
        }
    }
    if key.chars().count() > MAX_ECHOED_KEY_CHARS {
        name.push('…');
    }
    name
}
