//! `decode_position` against the payload rules of contract section 3.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use processor_core::{
    decode_position, AttributeValue, CodecError, Position, UnixMillis, MAX_PAYLOAD_BYTES,
};

/// 2025-11-28T10:00:00Z, the fix time of the contract's example.
const TS: i64 = 1_764_324_000_000;

/// A payload with every required field, valid.
fn base() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "device_id": "356307042441013",
        "timestamp": TS,
        "latitude": 54.68,
        "longitude": 25.28,
    }) else {
        unreachable!()
    };
    map
}

fn with(key: &str, value: Value) -> Map<String, Value> {
    let mut map = base();
    map.insert(key.to_owned(), value);
    map
}

fn without(key: &str) -> Map<String, Value> {
    let mut map = base();
    map.remove(key);
    map
}

fn decode(map: Map<String, Value>) -> Result<Position, CodecError> {
    decode_position(&serde_json::to_vec(&Value::Object(map)).unwrap())
}

fn ok(map: Map<String, Value>) -> Position {
    match decode(map) {
        Ok(p) => p,
        Err(e) => panic!("expected a position, got error: {e}"),
    }
}

/// The field and the rule of an `InvalidField` error.
fn invalid(map: Map<String, Value>) -> (String, &'static str) {
    match decode(map) {
        Err(CodecError::InvalidField { field, problem }) => (field, problem),
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

fn assert_invalid(map: Map<String, Value>, field: &str, problem: &str) {
    let (f, p) = invalid(map);
    assert_eq!((f.as_str(), p), (field, problem));
}

fn ts_of(value: Value) -> Result<UnixMillis, CodecError> {
    decode(with("timestamp", value)).map(|p| p.ts)
}

// ---------------------------------------------------------------------------------------
// Required fields and defaults

#[test]
fn required_fields_alone_decode_with_defaults() {
    let p = ok(base());
    assert_eq!(
        p,
        Position {
            device_id: "356307042441013".into(),
            ts: UnixMillis(TS),
            latitude: 54.68,
            longitude: 25.28,
            altitude: 0.0,
            angle: 0.0,
            speed: 0.0,
            satellites: 0,
            priority: 0,
            event_io_id: None,
            attributes: BTreeMap::new(),
        }
    );
}

#[test]
fn every_field_is_decoded() {
    let mut map = base();
    for (k, v) in [
        ("altitude", json!(112.5)),
        ("angle", json!(270.0)),
        ("speed", json!(42.0)),
        ("satellites", json!(11)),
        ("priority", json!(1)),
        ("event_io_id", json!(239)),
        (
            "attributes",
            json!({"239": 1, "66": 12.8, "iccid": "8937", "ign": true}),
        ),
    ] {
        map.insert(k.into(), v);
    }
    let p = ok(map);
    assert_eq!(p.altitude, 112.5);
    assert_eq!(p.angle, 270.0);
    assert_eq!(p.speed, 42.0);
    assert_eq!(p.satellites, 11);
    assert_eq!(p.priority, 1);
    assert_eq!(p.event_io_id, Some(239));
    assert_eq!(
        p.attributes,
        BTreeMap::from([
            ("239".to_owned(), AttributeValue::Unsigned(1)),
            ("66".to_owned(), AttributeValue::Float(12.8)),
            ("iccid".to_owned(), AttributeValue::Text("8937".into())),
            ("ign".to_owned(), AttributeValue::Bool(true)),
        ])
    );
}

#[test]
fn each_missing_required_field_is_named() {
    for field in ["device_id", "timestamp", "latitude", "longitude"] {
        assert_eq!(
            decode(without(field)),
            Err(CodecError::MissingField(field)),
            "{field}"
        );
    }
}

#[test]
fn a_required_field_given_as_null_is_missing() {
    for field in ["device_id", "timestamp", "latitude", "longitude"] {
        assert_eq!(
            decode(with(field, Value::Null)),
            Err(CodecError::MissingField(field)),
            "{field}"
        );
    }
}

#[test]
fn optional_fields_given_as_null_are_absent() {
    let mut map = base();
    for field in [
        "altitude",
        "angle",
        "speed",
        "satellites",
        "priority",
        "event_io_id",
        "attributes",
    ] {
        map.insert(field.into(), Value::Null);
    }
    assert_eq!(ok(map), ok(base()));
}

#[test]
fn unknown_fields_are_ignored() {
    let mut map = base();
    map.insert("codec".into(), json!(142));
    map.insert(
        "gateway".into(),
        json!({"nested": [1, null, {"deep": true}]}),
    );
    map.insert("DEVICE_ID".into(), json!(null));
    assert_eq!(ok(map), ok(base()));
}

// ---------------------------------------------------------------------------------------
// device_id

#[test]
fn device_id_must_be_a_string() {
    for v in [json!(356307042441013u64), json!(true), json!([]), json!({})] {
        assert_invalid(with("device_id", v), "device_id", "must be a string");
    }
}

#[test]
fn device_id_length_is_1_to_64_characters() {
    assert_invalid(
        with("device_id", json!("")),
        "device_id",
        "must not be empty",
    );
    assert_eq!(ok(with("device_id", json!("1"))).device_id, "1");
    let id64 = "7".repeat(64);
    assert_eq!(ok(with("device_id", json!(id64))).device_id, id64);
    assert_invalid(
        with("device_id", json!("7".repeat(65))),
        "device_id",
        "must be at most 64 characters",
    );
}

#[test]
fn device_id_refuses_control_characters() {
    for c in ['\u{0}', '\u{1}', '\t', '\n', '\u{1f}', '\u{7f}'] {
        assert_invalid(
            with("device_id", json!(format!("3563{c}07"))),
            "device_id",
            "must not contain control characters",
        );
    }
    // The first printable characters on either side of the ranges are fine.
    assert_eq!(
        ok(with("device_id", json!(" ~\u{80}"))).device_id,
        " ~\u{80}"
    );
}

#[test]
fn attributes_refuse_u0000_in_keys_and_string_values() {
    assert_invalid(
        with("attributes", json!({"io": "a\u{0}b"})),
        "attributes.io",
        "must not contain U+0000",
    );
    assert_invalid(
        with("attributes", json!({"i\u{0}o": 1})),
        "attributes.i\\u{0}o",
        "key must not contain U+0000",
    );
    // Other control characters are storable in text and jsonb: kept.
    let p = ok(with("attributes", json!({"io": "a\tb"})));
    assert_eq!(p.attributes["io"], AttributeValue::Text("a\tb".into()));
}

#[test]
fn device_id_length_counts_characters_not_bytes() {
    // 64 characters, 128 bytes.
    let id = "é".repeat(64);
    assert_eq!(ok(with("device_id", json!(id))).device_id, id);
    assert_invalid(
        with("device_id", json!("é".repeat(65))),
        "device_id",
        "must be at most 64 characters",
    );
}

// ---------------------------------------------------------------------------------------
// timestamp

#[test]
fn timestamp_as_integer_epoch_milliseconds() {
    assert_eq!(ts_of(json!(TS)), Ok(UnixMillis(TS)));
    assert_eq!(ts_of(json!(0)), Ok(UnixMillis(0)));
}

#[test]
fn timestamp_as_rfc3339_utc() {
    assert_eq!(ts_of(json!("2025-11-28T10:00:00Z")), Ok(UnixMillis(TS)));
    assert_eq!(ts_of(json!("1970-01-01T00:00:00Z")), Ok(UnixMillis(0)));
    // RFC 3339 (5.6, note) lets the `T` and `Z` be lower case and the `T` be a space.
    assert_eq!(ts_of(json!("2025-11-28t10:00:00z")), Ok(UnixMillis(TS)));
    assert_eq!(ts_of(json!("2025-11-28 10:00:00Z")), Ok(UnixMillis(TS)));
}

#[test]
fn timestamp_as_rfc3339_with_offsets() {
    assert_eq!(
        ts_of(json!("2025-11-28T12:00:00+02:00")),
        Ok(UnixMillis(TS))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T04:30:00-05:30")),
        Ok(UnixMillis(TS))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00+00:00")),
        Ok(UnixMillis(TS))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00-00:00")),
        Ok(UnixMillis(TS))
    );
}

#[test]
fn timestamp_fractions_are_milliseconds() {
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00.5Z")),
        Ok(UnixMillis(TS + 500))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00.123Z")),
        Ok(UnixMillis(TS + 123))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T12:00:00.250+02:00")),
        Ok(UnixMillis(TS + 250))
    );
}

#[test]
fn timestamp_sub_millisecond_digits_are_truncated_not_rounded() {
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00.123456789Z")),
        Ok(UnixMillis(TS + 123))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00.9999999+02:00")),
        Ok(UnixMillis(TS - 2 * 3_600_000 + 999))
    );
    assert_eq!(
        ts_of(json!("2025-11-28T10:00:00.0009Z")),
        Ok(UnixMillis(TS))
    );
}

#[test]
fn timestamp_leap_second_is_the_last_millisecond_of_its_minute() {
    // 2016-12-31T23:59:60Z was a real leap second; Unix time has no slot for it.
    let end_of_2016 = 1_483_228_800_000;
    assert_eq!(
        ts_of(json!("2016-12-31T23:59:60Z")),
        Ok(UnixMillis(end_of_2016 - 1))
    );
}

#[test]
fn timestamp_that_is_not_rfc3339_is_rejected() {
    for s in [
        "2025-11-28T10:00:00",  // no offset
        "2025-11-28",           // date only
        "2025-13-01T00:00:00Z", // month 13
        "1764324000000",        // integer in a string
        "",
        "yesterday",
    ] {
        assert_invalid(
            with("timestamp", json!(s)),
            "timestamp",
            "is not a valid RFC 3339 date-time",
        );
    }
}

#[test]
fn timestamp_of_the_wrong_type_is_rejected() {
    for v in [
        json!(1.5),
        json!(1_764_324_000_000.0),
        json!(true),
        json!([TS]),
        json!({"ms": TS}),
    ] {
        assert_invalid(
            with("timestamp", v),
            "timestamp",
            "must be integer epoch milliseconds or an RFC 3339 string",
        );
    }
}

#[test]
fn timestamp_before_1970_is_rejected() {
    for v in [
        json!(-1),
        json!(i64::MIN),
        json!("1969-12-31T23:59:59.999Z"),
        json!("1970-01-01T01:00:00+02:00"),
    ] {
        assert_invalid(with("timestamp", v), "timestamp", "must not be before 1970");
    }
}

#[test]
fn timestamp_up_to_the_end_of_year_9999_is_accepted() {
    let max = UnixMillis::MAX_FIX;
    assert_eq!(ts_of(json!(max.as_i64())), Ok(max));
    assert_eq!(ts_of(json!("9999-12-31T23:59:59.999Z")), Ok(max));
    assert_eq!(ts_of(json!("9999-12-31T23:59:59.999999Z")), Ok(max));
}

#[test]
fn timestamp_after_year_9999_is_rejected() {
    for v in [
        json!(UnixMillis::MAX_FIX.as_i64() + 1),
        json!(i64::MAX),
        json!(u64::MAX),
        // Year 9999 in its own offset, 10000 in UTC.
        json!("9999-12-31T23:00:00-01:00"),
    ] {
        assert_invalid(
            with("timestamp", v),
            "timestamp",
            "must not be after year 9999",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Numbers and their ranges

#[test]
fn latitude_range_is_inclusive() {
    for lat in [90.0, -90.0, 0.0, 89.999_999_9] {
        assert_eq!(ok(with("latitude", json!(lat))).latitude, lat);
    }
    for lat in [90.000_000_1, -90.000_000_1, 180.0, 1e300] {
        assert_invalid(
            with("latitude", json!(lat)),
            "latitude",
            "must be within [-90, 90]",
        );
    }
}

#[test]
fn longitude_range_is_inclusive() {
    for lon in [180.0, -180.0, 0.0] {
        assert_eq!(ok(with("longitude", json!(lon))).longitude, lon);
    }
    for lon in [180.000_000_1, -180.000_000_1, 360.0] {
        assert_invalid(
            with("longitude", json!(lon)),
            "longitude",
            "must be within [-180, 180]",
        );
    }
}

#[test]
fn integer_json_numbers_are_accepted_for_float_fields() {
    let mut map = base();
    map.insert("latitude".into(), json!(54));
    map.insert("longitude".into(), json!(-25));
    map.insert("altitude".into(), json!(-12));
    map.insert("angle".into(), json!(360));
    map.insert("speed".into(), json!(120));
    let p = ok(map);
    assert_eq!(
        (p.latitude, p.longitude, p.altitude, p.angle, p.speed),
        (54.0, -25.0, -12.0, 360.0, 120.0)
    );
}

#[test]
fn altitude_is_any_finite_number() {
    for alt in [-430.5, 0.0, 8_848.86, 1e308, -1e308] {
        assert_eq!(ok(with("altitude", json!(alt))).altitude, alt);
    }
}

#[test]
fn number_beyond_f64_is_invalid_json() {
    // serde_json refuses a literal that overflows f64, so it never reaches the range checks.
    let text = br#"{"device_id":"1","timestamp":0,"latitude":0,"longitude":0,"altitude":1e400}"#;
    assert!(matches!(
        decode_position(text),
        Err(CodecError::InvalidJson(_))
    ));
}

#[test]
fn angle_range_is_0_to_360_inclusive() {
    for angle in [0.0, 360.0, 180.5] {
        assert_eq!(ok(with("angle", json!(angle))).angle, angle);
    }
    for angle in [-0.000_001, 360.000_001, -90.0] {
        assert_invalid(
            with("angle", json!(angle)),
            "angle",
            "must be within [0, 360]",
        );
    }
}

#[test]
fn speed_must_not_be_negative() {
    assert_eq!(ok(with("speed", json!(0.0))).speed, 0.0);
    assert_eq!(ok(with("speed", json!(0))).speed, 0.0);
    assert_eq!(ok(with("speed", json!(1e300))).speed, 1e300);
    // -0 is zero, not a negative speed.
    assert_eq!(ok(with("speed", json!(-0.0))).speed, 0.0);
    for speed in [json!(-0.000_001), json!(-1), json!(-1e300)] {
        assert_invalid(with("speed", speed), "speed", "must not be negative");
    }
}

#[test]
fn float_fields_of_the_wrong_type_are_rejected() {
    for field in ["latitude", "longitude", "altitude", "angle", "speed"] {
        for v in [json!("1.5"), json!(true), json!([1.5]), json!({"v": 1.5})] {
            assert_invalid(with(field, v), field, "must be a number");
        }
    }
}

#[test]
fn satellites_is_an_integer_0_to_255() {
    assert_eq!(ok(with("satellites", json!(0))).satellites, 0);
    assert_eq!(ok(with("satellites", json!(255))).satellites, 255);
    for v in [json!(256), json!(-1), json!(u64::MAX), json!(i64::MIN)] {
        assert_invalid(
            with("satellites", v),
            "satellites",
            "must be an integer within 0..=255",
        );
    }
    for v in [json!(3.0), json!(3.5), json!("3"), json!(true)] {
        assert_invalid(with("satellites", v), "satellites", "must be an integer");
    }
}

#[test]
fn priority_is_an_integer_0_to_2() {
    for prio in 0..=2u8 {
        assert_eq!(ok(with("priority", json!(prio))).priority, prio);
    }
    for v in [json!(3), json!(-1), json!(u64::MAX)] {
        assert_invalid(
            with("priority", v),
            "priority",
            "must be an integer within 0..=2",
        );
    }
    for v in [json!(1.0), json!("1"), json!([1])] {
        assert_invalid(with("priority", v), "priority", "must be an integer");
    }
}

#[test]
fn event_io_id_is_an_integer_that_fits_the_column() {
    assert_eq!(ok(with("event_io_id", json!(0))).event_io_id, Some(0));
    assert_eq!(ok(with("event_io_id", json!(239))).event_io_id, Some(239));
    assert_eq!(
        ok(with("event_io_id", json!(i32::MAX))).event_io_id,
        Some(i32::MAX)
    );
    for v in [
        json!(i32::MAX as i64 + 1),
        json!(-1),
        json!(i64::MIN),
        json!(u64::MAX),
    ] {
        assert_invalid(
            with("event_io_id", v),
            "event_io_id",
            "must be an integer within 0..=2147483647",
        );
    }
    for v in [json!(1.5), json!("239"), json!(false)] {
        assert_invalid(with("event_io_id", v), "event_io_id", "must be an integer");
    }
}

// ---------------------------------------------------------------------------------------
// attributes

fn attrs(value: Value) -> Result<BTreeMap<String, AttributeValue>, CodecError> {
    decode(with("attributes", value)).map(|p| p.attributes)
}

fn one_attr(value: Value) -> AttributeValue {
    let mut map = attrs(json!({ "k": value })).expect("attribute accepted");
    map.remove("k").expect("attribute kept")
}

#[test]
fn attribute_integers_are_kept_exact() {
    assert_eq!(
        one_attr(json!(u64::MAX)),
        AttributeValue::Unsigned(u64::MAX)
    );
    // Beyond 2^53 a float would round: the ICCID-like value must survive unchanged.
    assert_eq!(
        one_attr(json!(9_007_199_254_740_993u64)),
        AttributeValue::Unsigned(9_007_199_254_740_993)
    );
    assert_eq!(one_attr(json!(0)), AttributeValue::Unsigned(0));
}

#[test]
fn negative_attribute_integers_are_signed() {
    assert_eq!(one_attr(json!(-1)), AttributeValue::Signed(-1));
    assert_eq!(one_attr(json!(i64::MIN)), AttributeValue::Signed(i64::MIN));
}

#[test]
fn attribute_floats_stay_floats() {
    assert_eq!(one_attr(json!(12.8)), AttributeValue::Float(12.8));
    assert_eq!(one_attr(json!(-0.5)), AttributeValue::Float(-0.5));
    // Written with a fraction, it is a float even when integral.
    assert_eq!(one_attr(json!(2.0)), AttributeValue::Float(2.0));
    assert_eq!(one_attr(json!(1e300)), AttributeValue::Float(1e300));
}

#[test]
fn attribute_integers_beyond_u64_become_floats() {
    let text = format!(
        r#"{{"device_id":"1","timestamp":0,"latitude":1,"longitude":1,"attributes":{{"k":{}}}}}"#,
        u64::MAX as u128 + 1
    );
    let p = decode_position(text.as_bytes()).unwrap();
    assert_eq!(
        p.attributes["k"],
        AttributeValue::Float(18_446_744_073_709_551_616.0)
    );
}

#[test]
fn attribute_strings_and_booleans() {
    assert_eq!(one_attr(json!("")), AttributeValue::Text(String::new()));
    assert_eq!(
        one_attr(json!("89370 00000")),
        AttributeValue::Text("89370 00000".into())
    );
    assert_eq!(one_attr(json!(false)), AttributeValue::Bool(false));
    assert_eq!(one_attr(json!(true)), AttributeValue::Bool(true));
}

#[test]
fn empty_attributes_object_is_fine() {
    assert_eq!(attrs(json!({})), Ok(BTreeMap::new()));
}

#[test]
fn attribute_null_array_or_object_is_rejected_with_its_key() {
    for v in [json!(null), json!([1, 2]), json!({"a": 1})] {
        assert_eq!(
            attrs(json!({"ok": 1, "io_240": v})),
            Err(CodecError::InvalidField {
                field: "attributes.io_240".into(),
                problem: "must be a number, a string or a boolean",
            }),
        );
    }
}

#[test]
fn attributes_must_be_an_object() {
    for v in [json!([]), json!("k=v"), json!(1), json!(true)] {
        assert_invalid(with("attributes", v), "attributes", "must be an object");
    }
}

#[test]
fn long_attribute_keys_are_cut_in_errors() {
    let key = "k".repeat(100);
    let (field, _) = invalid(with("attributes", json!({ key.clone(): null })));
    assert_eq!(field, format!("attributes.{}…", "k".repeat(32)));
    // A key of exactly the limit is echoed whole.
    let key = "k".repeat(32);
    let (field, _) = invalid(with("attributes", json!({ key.clone(): null })));
    assert_eq!(field, format!("attributes.{key}"));
}

// ---------------------------------------------------------------------------------------
// The payload as a whole

/// A valid payload padded with an unknown field to exactly `len` bytes.
fn padded_payload(len: usize) -> Vec<u8> {
    let head = br#"{"device_id":"356307042441013","timestamp":1764324000000,"latitude":54.68,"longitude":25.28,"pad":""#;
    let tail = br#""}"#;
    let mut out = head.to_vec();
    out.resize(len - tail.len(), b'x');
    out.extend_from_slice(tail);
    assert_eq!(out.len(), len);
    out
}

#[test]
fn the_size_limit_is_64_kib() {
    assert_eq!(MAX_PAYLOAD_BYTES, 65_536);
}

#[test]
fn a_payload_of_exactly_64_kib_is_accepted() {
    let p = decode_position(&padded_payload(65_536)).expect("64 KiB accepted");
    assert_eq!(p.ts, UnixMillis(TS));
}

#[test]
fn a_payload_one_byte_over_64_kib_is_rejected() {
    assert_eq!(
        decode_position(&padded_payload(65_537)),
        Err(CodecError::TooLarge {
            size: 65_537,
            limit: 65_536
        })
    );
}

#[test]
fn the_size_check_comes_before_parsing() {
    // Neither UTF-8 nor JSON: only the size is reported.
    assert_eq!(
        decode_position(&vec![0xff; 65_537]),
        Err(CodecError::TooLarge {
            size: 65_537,
            limit: 65_536
        })
    );
}

#[test]
fn json_that_is_not_an_object_is_rejected() {
    for text in ["[]", "[{}]", "1", "\"payload\"", "null", "true", " 3.5 "] {
        assert_eq!(
            decode_position(text.as_bytes()),
            Err(CodecError::NotAnObject),
            "{text}"
        );
    }
}

#[test]
fn invalid_utf8_is_rejected() {
    assert_eq!(decode_position(b"\xff"), Err(CodecError::NotUtf8));
    assert_eq!(
        decode_position(b"{\"device_id\":\"35630\xc3\x28\",\"timestamp\":0}"),
        Err(CodecError::NotUtf8)
    );
}

#[test]
fn invalid_json_is_rejected() {
    for text in [
        "",
        "{",
        "{\"device_id\":}",
        "{} trailing",
        "{'device_id':'1'}",
        "{\"a\":1,}",
        "NaN",
    ] {
        assert!(
            matches!(
                decode_position(text.as_bytes()),
                Err(CodecError::InvalidJson(_))
            ),
            "{text:?}"
        );
    }
}

#[test]
fn invalid_json_errors_name_a_position() {
    let Err(CodecError::InvalidJson(text)) = decode_position(b"{\n  \"a\": }") else {
        panic!("expected InvalidJson");
    };
    assert_eq!(text, "syntax error at line 2 column 8");
    let Err(CodecError::InvalidJson(text)) = decode_position(b"{\"a\":") else {
        panic!("expected InvalidJson");
    };
    assert!(text.starts_with("unexpected end of input"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Errors never carry the payload

const SECRET: &str = "s3cr3t-TOKEN-9f8e7d";

fn assert_hides_secret(payload: &[u8]) {
    let error = decode_position(payload).expect_err("payload must be rejected");
    let text = error.to_string();
    assert!(
        !text.contains(SECRET),
        "error text {text:?} leaks the payload"
    );
    assert!(
        !text.contains("s3cr3t"),
        "error text {text:?} leaks part of the payload"
    );
}

#[test]
fn errors_never_contain_payload_values() {
    let cases: Vec<Map<String, Value>> = vec![
        // The secret is valid but a later field is not.
        {
            let mut m = with("device_id", json!(SECRET));
            m.insert("latitude".into(), json!(91));
            m
        },
        {
            let mut m = with("device_id", json!(SECRET));
            m.remove("timestamp");
            m
        },
        // The secret is itself the bad value.
        with("device_id", json!(SECRET.repeat(4))),
        with("timestamp", json!(SECRET)),
        with("latitude", json!(SECRET)),
        with("altitude", json!(SECRET)),
        with("satellites", json!(SECRET)),
        with("priority", json!(SECRET)),
        with("event_io_id", json!(SECRET)),
        with("attributes", json!(SECRET)),
        with("attributes", json!({ "k": { "nested": SECRET } })),
        with("attributes", json!({ "k": [SECRET] })),
    ];
    for map in cases {
        assert_hides_secret(&serde_json::to_vec(&Value::Object(map)).unwrap());
    }
}

#[test]
fn invalid_json_errors_never_contain_payload_values() {
    for text in [
        format!(r#"{{"device_id":"{SECRET}","timestamp":"#),
        format!(r#"{{"device_id":"{SECRET}" "timestamp":0}}"#),
        format!(r#"{{"device_id":{SECRET}}}"#),
        SECRET.to_string(),
        format!(r#"{{"device_id":"{SECRET}\q"}}"#),
    ] {
        assert_hides_secret(text.as_bytes());
    }
}

#[test]
fn non_utf8_and_oversize_errors_never_contain_payload_values() {
    let mut bytes = format!(r#"{{"device_id":"{SECRET}"#).into_bytes();
    bytes.push(0xfe);
    assert_hides_secret(&bytes);
    let mut big = format!(r#"{{"device_id":"{SECRET}","pad":""#).into_bytes();
    big.resize(MAX_PAYLOAD_BYTES + 1, b'a');
    assert_hides_secret(&big);
}

// ---------------------------------------------------------------------------------------
// Properties

/// Bounded so the whole core suite stays fast in debug builds.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// JSON leaves that exercise the number paths: integers of every width, floats, strings.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // non-finite becomes null
        (-400.0f64..400.0).prop_map(Value::from),
        (0i64..=300).prop_map(Value::from),
        ".{0,70}".prop_map(Value::String),
        Just(Value::String("2025-11-28T12:00:00.123456+02:00".into())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 11] = [
    "device_id",
    "timestamp",
    "latitude",
    "longitude",
    "altitude",
    "angle",
    "speed",
    "satellites",
    "priority",
    "event_io_id",
    "attributes",
];

/// Objects that use the contract's field names, so the generated values reach the field
/// checks instead of stopping at the first missing field.
fn payload_like_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(&FIELDS[..]), json_value()), 0..14).prop_map(
        |pairs| {
            let mut map = base();
            for (k, v) in pairs {
                map.insert(k.to_owned(), v);
            }
            Value::Object(map)
        },
    )
}

/// A finite float with few decimal digits: its shortest JSON form parses back to the very
/// same f64 with serde_json's default (not `float_roundtrip`) parser.
fn decimal(min: i64, max: i64, scale_digits: u32) -> impl Strategy<Value = f64> {
    let scale = 10f64.powi(scale_digits as i32);
    (min * scale as i64..=max * scale as i64).prop_map(move |i| i as f64 / scale)
}

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<u64>().prop_map(AttributeValue::Unsigned),
        (i64::MIN..0).prop_map(AttributeValue::Signed),
        decimal(-1_000_000, 1_000_000, 3).prop_map(AttributeValue::Float),
        // Any character but U+0000, which Postgres cannot store.
        "[^\\x00]{0,20}".prop_map(AttributeValue::Text),
    ]
}

fn position() -> impl Strategy<Value = Position> {
    (
        // No control characters in a device id (contract section 3).
        "[^\\x00-\\x1f\\x7f]{1,64}",
        0..=UnixMillis::MAX_FIX.as_i64(),
        (decimal(-90, 90, 7), decimal(-180, 180, 7)),
        (
            decimal(-500, 9_000, 2),
            decimal(0, 360, 2),
            decimal(0, 400, 1),
        ),
        (any::<u8>(), 0..=2u8, prop::option::of(0..=i32::MAX)),
        prop::collection::btree_map("[^\\x00]{0,12}", attribute_value(), 0..6),
    )
        .prop_map(
            |(device_id, ts, (latitude, longitude), (altitude, angle, speed), rest, attributes)| {
                let (satellites, priority, event_io_id) = rest;
                Position {
                    device_id,
                    ts: UnixMillis(ts),
                    latitude,
                    longitude,
                    altitude,
                    angle,
                    speed,
                    satellites,
                    priority,
                    event_io_id,
                    attributes,
                }
            },
        )
}

fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::Bool(b) => json!(b),
        AttributeValue::Unsigned(u) => json!(u),
        AttributeValue::Signed(i) => json!(i),
        AttributeValue::Float(f) => json!(f),
        AttributeValue::Text(s) => json!(s),
    }
}

/// The payload a gateway would write for `p`, with the fix time in either form.
fn payload_of(p: &Position, rfc3339: bool) -> Vec<u8> {
    let timestamp = if rfc3339 {
        let t =
            OffsetDateTime::from_unix_timestamp_nanos(p.ts.as_i64() as i128 * 1_000_000).unwrap();
        json!(t.format(&Rfc3339).unwrap())
    } else {
        json!(p.ts.as_i64())
    };
    let attributes: Map<String, Value> = p
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), attribute_json(v)))
        .collect();
    let payload = json!({
        "device_id": p.device_id,
        "timestamp": timestamp,
        "latitude": p.latitude,
        "longitude": p.longitude,
        "altitude": p.altitude,
        "angle": p.angle,
        "speed": p.speed,
        "satellites": p.satellites,
        "priority": p.priority,
        "event_io_id": p.event_io_id,
        "attributes": attributes,
    });
    serde_json::to_vec(&payload).unwrap()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_position(&bytes);
    }

    #[test]
    fn never_panics_on_arbitrary_json(value in json_value()) {
        let _ = decode_position(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn never_panics_on_payload_like_objects(value in payload_like_object()) {
        if let Ok(p) = decode_position(&serde_json::to_vec(&value).unwrap()) {
            prop_assert!((-90.0..=90.0).contains(&p.latitude));
            prop_assert!((-180.0..=180.0).contains(&p.longitude));
            prop_assert!((0.0..=360.0).contains(&p.angle));
            prop_assert!(p.speed >= 0.0 && p.speed.is_finite());
            prop_assert!(p.altitude.is_finite());
            prop_assert!(p.priority <= 2);
            prop_assert!((0..=UnixMillis::MAX_FIX.as_i64()).contains(&p.ts.as_i64()));
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn valid_positions_round_trip(p in position(), rfc3339 in any::<bool>()) {
        prop_assert_eq!(decode_position(&payload_of(&p, rfc3339)), Ok(p));
    }

    #[test]
    fn truncated_payloads_never_panic(p in position()) {
        let bytes = payload_of(&p, false);
        for end in 0..bytes.len() {
            prop_assert!(decode_position(&bytes[..end]).is_err());
        }
    }
}
