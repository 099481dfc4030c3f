//! Decoding of stream payloads (contract section 3).
//!
//! The decoder checks every field the contract names and reports the first problem it finds
//! with the field's name. Errors never carry the payload itself, only field names and the
//! rule that was broken, so they are safe to log and to put into the dead-letter stream.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
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
    let value: Value =
        serde_json::from_str(text).map_err(|e| CodecError::InvalidJson(syntax_error(&e)))?;
    let Value::Object(fields) = value else {
        return Err(CodecError::NotAnObject);
    };
    decode_fields(&fields)
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

fn decode_fields(fields: &Map<String, Value>) -> Result<Position, CodecError> {
    let device_id = device_id(required(fields, "device_id")?)?;
    let ts = timestamp(required(fields, "timestamp")?)?;
    let latitude = number_in(required(fields, "latitude")?, "latitude", -90.0, 90.0)?;
    let longitude = number_in(required(fields, "longitude")?, "longitude", -180.0, 180.0)?;
    let altitude = optional(fields, "altitude")
        .map(|v| number(v, "altitude"))
        .transpose()?
        .unwrap_or(0.0);
    let angle = optional(fields, "angle")
        .map(|v| number_in(v, "angle", 0.0, 360.0))
        .transpose()?
        .unwrap_or(0.0);
    let speed = optional(fields, "speed")
        .map(|v| number_in(v, "speed", 0.0, f64::MAX))
        .transpose()?
        .unwrap_or(0.0);
    let satellites = optional(fields, "satellites")
        .map(|v| integer_in(v, "satellites", 0, 255))
        .transpose()?
        .unwrap_or(0) as u8;
    let priority = optional(fields, "priority")
        .map(|v| integer_in(v, "priority", 0, 2))
        .transpose()?
        .unwrap_or(0) as u8;
    let event_io_id = optional(fields, "event_io_id")
        .map(|v| integer_in(v, "event_io_id", 0, i32::MAX as i64))
        .transpose()?
        .map(|v| v as i32);
    let attributes = optional(fields, "attributes")
        .map(attributes)
        .transpose()?
        .unwrap_or_default();
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

fn required<'a>(
    fields: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a Value, CodecError> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(CodecError::MissingField(name)),
        Some(v) => Ok(v),
    }
}

/// An optional field given as `null` counts as absent: gateways commonly serialise missing
/// values that way.
fn optional<'a>(fields: &'a Map<String, Value>, name: &'static str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn device_id(v: &Value) -> Result<String, CodecError> {
    let Value::String(s) = v else {
        return Err(CodecError::field("device_id", "must be a string"));
    };
    let chars = s.chars().count();
    if chars == 0 {
        return Err(CodecError::field("device_id", "must not be empty"));
    }
    if chars > MAX_DEVICE_ID_CHARS {
        return Err(CodecError::field(
            "device_id",
            "must be at most 64 characters",
        ));
    }
    Ok(s.clone())
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

fn attributes(v: &Value) -> Result<BTreeMap<String, AttributeValue>, CodecError> {
    let Value::Object(map) = v else {
        return Err(CodecError::field("attributes", "must be an object"));
    };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => AttributeValue::Bool(*b),
                Value::String(s) => AttributeValue::Text(s.clone()),
                Value::Number(n) => {
                    if let Some(u) = n.as_u64() {
                        AttributeValue::Unsigned(u)
                    } else if let Some(i) = n.as_i64() {
                        AttributeValue::Signed(i)
                    } else {
                        match n.as_f64() {
                            Some(f) if f.is_finite() => AttributeValue::Float(f),
                            _ => {
                                return Err(CodecError::InvalidField {
                                    field: attribute_field(k),
                                    problem: "must be a finite number",
                                })
                            }
                        }
                    }
                }
                _ => {
                    return Err(CodecError::InvalidField {
                        field: attribute_field(k),
                        problem: "must be a number, a string or a boolean",
                    })
                }
            };
            Ok((k.clone(), value))
        })
        .collect()
}

fn attribute_field(key: &str) -> String {
    let mut name = String::from("attributes.");
    name.extend(key.chars().take(MAX_ECHOED_KEY_CHARS));
    if key.chars().count() > MAX_ECHOED_KEY_CHARS {
        name.push('…');
    }
    name
}
