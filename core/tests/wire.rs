//! WebSocket wire messages of contract section 5: client parsing and server encoding.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::wire::{
    encode, parse_client_message, position_message, BadRequest, BadRequestReason, ClientMessage,
    ErrorCode, ServerMessage, Topic, WirePosition,
};
use processor_core::{Position, UnixMillis};

const UUID: &str = "5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f";
const UUID_UPPER: &str = "5F0C2D1E-8A4B-4C3D-9E2F-1A2B3C4D5E6F";
const TOPIC: &str = "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f";

fn topic() -> Topic {
    Topic(Uuid::parse_str(UUID).unwrap())
}

fn parse(text: &str) -> Result<ClientMessage, BadRequest> {
    parse_client_message(text.as_bytes())
}

fn bad(text: &str) -> BadRequest {
    match parse(text) {
        Err(e) => e,
        Ok(m) => panic!("{text:?} was accepted as {m:?}"),
    }
}

fn bad_request(reason: BadRequestReason, topic: Option<&str>) -> BadRequest {
    BadRequest {
        reason,
        topic: topic.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------------------
// Client messages: accepted

#[test]
fn subscribe_unsubscribe_and_ping() {
    assert_eq!(
        parse(&format!(r#"{{"type":"subscribe","topic":"{TOPIC}"}}"#)),
        Ok(ClientMessage::Subscribe(topic(), Default::default()))
    );
    assert_eq!(
        parse(&format!(r#"{{"type":"unsubscribe","topic":"{TOPIC}"}}"#)),
        Ok(ClientMessage::Unsubscribe(topic()))
    );
    assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
}

#[test]
fn extra_fields_are_ignored() {
    assert_eq!(
        parse(r#"{"type":"ping","topic":"not even a topic","id":7}"#),
        Ok(ClientMessage::Ping)
    );
    assert_eq!(
        parse(&format!(
            r#" {{ "id": 1, "topic": "{TOPIC}", "type": "subscribe", "extra": [null] }} "#
        )),
        Ok(ClientMessage::Subscribe(topic(), Default::default()))
    );
}

#[test]
fn uppercase_uuid_is_accepted_and_canonicalised() {
    let msg = parse(&format!(
        r#"{{"type":"subscribe","topic":"event:{UUID_UPPER}"}}"#
    ));
    assert_eq!(
        msg,
        Ok(ClientMessage::Subscribe(topic(), Default::default()))
    );
    let Ok(ClientMessage::Subscribe(t, _)) = msg else {
        unreachable!()
    };
    assert_eq!(t.to_string(), TOPIC);
    assert_eq!(t.event_id().to_string(), UUID);
}

#[test]
fn mixed_case_uuid_is_the_same_topic() {
    let mixed = "event:5F0c2D1e-8a4B-4c3D-9e2F-1A2b3C4d5E6f";
    assert_eq!(mixed.parse::<Topic>(), Ok(topic()));
}

#[test]
fn topic_display_parses_back_to_itself() {
    let t = topic();
    assert_eq!(t.to_string().parse::<Topic>(), Ok(t));
    assert_eq!(t.to_string(), TOPIC);
}

// ---------------------------------------------------------------------------------------
// Client messages: every bad_request reason

#[test]
fn invalid_json() {
    for text in ["", "{", "ping", r#"{"type":"ping"} x"#, "{'type':'ping'}"] {
        assert_eq!(
            bad(text),
            bad_request(BadRequestReason::InvalidJson, None),
            "{text:?}"
        );
    }
    assert_eq!(
        parse_client_message(b"{\"type\":\"p\xffng\"}"),
        Err(bad_request(BadRequestReason::InvalidJson, None))
    );
}

#[test]
fn not_an_object() {
    for text in ["[]", "null", "1", r#""ping""#, r#"[{"type":"ping"}]"#] {
        assert_eq!(
            bad(text),
            bad_request(BadRequestReason::NotAnObject, None),
            "{text:?}"
        );
    }
}

#[test]
fn missing_or_non_string_type() {
    for text in [
        "{}",
        r#"{"type":null}"#,
        r#"{"type":1}"#,
        r#"{"type":["ping"]}"#,
        r#"{"Type":"ping"}"#,
    ] {
        assert_eq!(
            bad(text),
            bad_request(BadRequestReason::MissingType, None),
            "{text:?}"
        );
    }
}

#[test]
fn missing_type_echoes_the_topic() {
    assert_eq!(
        bad(&format!(r#"{{"topic":"{TOPIC}"}}"#)),
        bad_request(BadRequestReason::MissingType, Some(TOPIC))
    );
}

#[test]
fn unknown_type() {
    for text in [
        r#"{"type":"publish"}"#,
        r#"{"type":""}"#,
        r#"{"type":"PING"}"#,
        r#"{"type":"Subscribe"}"#,
    ] {
        assert_eq!(
            bad(text),
            bad_request(BadRequestReason::UnknownType, None),
            "{text:?}"
        );
    }
}

#[test]
fn unknown_type_echoes_the_topic() {
    assert_eq!(
        bad(&format!(r#"{{"type":"publish","topic":"{TOPIC}"}}"#)),
        bad_request(BadRequestReason::UnknownType, Some(TOPIC))
    );
    // The echo is whatever the client wrote, valid topic or not.
    assert_eq!(
        bad(r#"{"type":"publish","topic":"room:1"}"#),
        bad_request(BadRequestReason::UnknownType, Some("room:1"))
    );
    // Only a string can be echoed.
    assert_eq!(
        bad(r#"{"type":"publish","topic":7}"#),
        bad_request(BadRequestReason::UnknownType, None)
    );
}

#[test]
fn missing_or_non_string_topic() {
    for kind in ["subscribe", "unsubscribe"] {
        for topic in [
            "",
            r#","topic":null"#,
            r#","topic":7"#,
            r#","topic":{"id":1}"#,
        ] {
            let text = format!(r#"{{"type":"{kind}"{topic}}}"#);
            assert_eq!(
                bad(&text),
                bad_request(BadRequestReason::MissingTopic, None),
                "{text}"
            );
        }
    }
}

fn assert_malformed(raw: &str) {
    for kind in ["subscribe", "unsubscribe"] {
        let text = serde_json::to_string(&json!({"type": kind, "topic": raw})).unwrap();
        assert_eq!(
            bad(&text),
            bad_request(BadRequestReason::MalformedTopic, Some(raw)),
            "{text}"
        );
    }
    assert!(raw.parse::<Topic>().is_err(), "{raw}");
}

#[test]
fn malformed_topics_are_rejected_and_echoed() {
    for raw in [
        "",
        "event:",
        "event:not-a-uuid",
        "5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        "EVENT:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        "device:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        "event: 5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f ",
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6",
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6g",
        // Hyphens in the wrong places, same length.
        "event:5f0c2d1e8-a4b-4c3d-9e2f-1a2b3c4d5e6f",
    ] {
        assert_malformed(raw);
    }
}

#[test]
fn uuid_forms_other_than_hyphenated_are_rejected() {
    for raw in [
        "event:5f0c2d1e8a4b4c3d9e2f1a2b3c4d5e6f",
        "event:{5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f}",
        "event:urn:uuid:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
        "event:URN:UUID:5F0C2D1E-8A4B-4C3D-9E2F-1A2B3C4D5E6F",
        "event:5F0C2D1E8A4B4C3D9E2F1A2B3C4D5E6F",
    ] {
        assert_malformed(raw);
    }
}

#[test]
fn a_long_malformed_topic_is_echoed_cut_to_128_characters() {
    let raw = format!("event:{}", "ü".repeat(500));
    let text = serde_json::to_string(&json!({"type": "subscribe", "topic": raw})).unwrap();
    let error = bad(&text);
    assert_eq!(error.reason, BadRequestReason::MalformedTopic);
    let echoed = error.topic.expect("topic echoed");
    assert_eq!(echoed.chars().count(), 128);
    assert!(raw.starts_with(&echoed));

    let text = serde_json::to_string(&json!({"type": "nope", "topic": raw})).unwrap();
    assert_eq!(bad(&text).topic.unwrap().chars().count(), 128);
}

#[test]
fn too_large_and_binary_are_for_the_caller_to_report() {
    // The parser never sees frames over the limit or binary frames; the connection handler
    // builds these itself, without a topic.
    for reason in [BadRequestReason::TooLarge, BadRequestReason::Binary] {
        assert_eq!(BadRequest::new(reason), bad_request(reason, None));
    }
}

#[test]
fn every_reason_has_its_own_message_and_bad_request_shows_it() {
    let reasons = [
        BadRequestReason::InvalidJson,
        BadRequestReason::NotAnObject,
        BadRequestReason::MissingType,
        BadRequestReason::UnknownType,
        BadRequestReason::MissingTopic,
        BadRequestReason::MalformedTopic,
        BadRequestReason::TooLarge,
        BadRequestReason::Binary,
    ];
    let texts: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    for (i, text) in texts.iter().enumerate() {
        assert!(!text.is_empty());
        assert!(!texts[i + 1..].contains(text), "duplicate message {text:?}");
        let with_topic = BadRequest {
            reason: reasons[i],
            topic: Some(TOPIC.into()),
        };
        assert_eq!(&with_topic.to_string(), text);
    }
}

// ---------------------------------------------------------------------------------------
// Server messages: exact text

fn text(message: &ServerMessage) -> String {
    String::from_utf8(encode(message).to_vec()).unwrap()
}

fn wire(device_id: &str, lat: f64, lon: f64, ts: i64, speed: f64, course: f64) -> WirePosition {
    WirePosition {
        device_id: device_id.into(),
        lat,
        lon,
        ts,
        speed,
        course,
    }
}

fn example() -> WirePosition {
    wire(
        "356307042441013",
        54.68,
        25.28,
        1_764_324_000_000,
        42.0,
        270.0,
    )
}

#[test]
fn subscribed_unsubscribed_and_pong() {
    assert_eq!(
        text(&ServerMessage::Subscribed {
            topic: TOPIC.into()
        }),
        format!(r#"{{"type":"subscribed","topic":"{TOPIC}"}}"#)
    );
    assert_eq!(
        text(&ServerMessage::Unsubscribed {
            topic: TOPIC.into()
        }),
        format!(r#"{{"type":"unsubscribed","topic":"{TOPIC}"}}"#)
    );
    assert_eq!(text(&ServerMessage::Pong), r#"{"type":"pong"}"#);
}

#[test]
fn position_matches_the_contract_example() {
    assert_eq!(
        text(&ServerMessage::Position {
            topic: TOPIC.into(),
            position: example(),
        }),
        format!(
            r#"{{"type":"position","topic":"{TOPIC}","deviceId":"356307042441013","lat":54.68,"lon":25.28,"ts":1764324000000,"speed":42.0,"course":270.0}}"#
        )
    );
}

#[test]
fn speed_and_course_are_omitted_when_zero() {
    let msg = |speed, course| {
        text(&ServerMessage::Position {
            topic: TOPIC.into(),
            position: wire("1", -1.5, 2.25, 7, speed, course),
        })
    };
    let head = format!(
        r#"{{"type":"position","topic":"{TOPIC}","deviceId":"1","lat":-1.5,"lon":2.25,"ts":7"#
    );
    assert_eq!(msg(0.0, 0.0), format!("{head}}}"));
    assert_eq!(msg(3.5, 0.0), format!(r#"{head},"speed":3.5}}"#));
    assert_eq!(msg(0.0, 90.0), format!(r#"{head},"course":90.0}}"#));
    assert_eq!(msg(-0.0, -0.0), format!("{head}}}"));
}

#[test]
fn snapshot_positions_lack_type_and_topic() {
    let snapshot = ServerMessage::Snapshot {
        topic: TOPIC.into(),
        positions: vec![example().into(), wire("2", 0.5, -0.5, 1, 0.0, 0.0).into()],
        truncated: false,
    };
    assert_eq!(
        text(&snapshot),
        format!(
            r#"{{"type":"snapshot","topic":"{TOPIC}","positions":[{{"deviceId":"356307042441013","lat":54.68,"lon":25.28,"ts":1764324000000,"speed":42.0,"course":270.0}},{{"deviceId":"2","lat":0.5,"lon":-0.5,"ts":1}}]}}"#
        )
    );
    assert_eq!(
        text(&ServerMessage::Snapshot {
            topic: TOPIC.into(),
            positions: vec![],
            truncated: false,
        }),
        format!(r#"{{"type":"snapshot","topic":"{TOPIC}","positions":[]}}"#)
    );
}

#[test]
fn errors_with_and_without_topic() {
    assert_eq!(
        text(&ServerMessage::Error {
            code: ErrorCode::Forbidden,
            topic: Some(TOPIC.into()),
            message: "not allowed".into(),
        }),
        format!(
            r#"{{"type":"error","code":"forbidden","topic":"{TOPIC}","message":"not allowed"}}"#
        )
    );
    assert_eq!(
        text(&ServerMessage::Error {
            code: ErrorCode::BadRequest,
            topic: None,
            message: "message is not valid JSON".into(),
        }),
        r#"{"type":"error","code":"bad_request","message":"message is not valid JSON"}"#
    );
    assert_eq!(
        text(&ServerMessage::Error {
            code: ErrorCode::LimitExceeded,
            topic: Some(TOPIC.into()),
            message: "too many subscriptions".into(),
        }),
        format!(
            r#"{{"type":"error","code":"limit_exceeded","topic":"{TOPIC}","message":"too many subscriptions"}}"#
        )
    );
}

#[test]
fn position_message_uses_the_canonical_topic_and_maps_angle_to_course() {
    let upper: Topic = format!("event:{UUID_UPPER}").parse().unwrap();
    let position = Position {
        device_id: "356307042441013".into(),
        ts: UnixMillis(1_764_324_000_000),
        latitude: 54.68,
        longitude: 25.28,
        altitude: 120.0,
        angle: 270.0,
        speed: 42.0,
        satellites: 9,
        priority: 1,
        event_io_id: Some(239),
        attributes: BTreeMap::new(),
    };
    assert_eq!(WirePosition::from(&position), example());
    assert_eq!(
        String::from_utf8(position_message(&upper, &position).to_vec()).unwrap(),
        format!(
            r#"{{"type":"position","topic":"{TOPIC}","deviceId":"356307042441013","lat":54.68,"lon":25.28,"ts":1764324000000,"speed":42.0,"course":270.0}}"#
        )
    );
}

// ---------------------------------------------------------------------------------------
// Server messages: round trip

fn round_trips(message: &ServerMessage) {
    let bytes = encode(message);
    let back: ServerMessage = serde_json::from_slice(&bytes).expect("decodes");
    assert_eq!(&back, message, "{}", String::from_utf8_lossy(&bytes));
}

#[test]
fn every_server_message_round_trips() {
    for message in [
        ServerMessage::Subscribed {
            topic: TOPIC.into(),
        },
        ServerMessage::Snapshot {
            topic: TOPIC.into(),
            positions: vec![example().into(), wire("2", 0.5, -0.5, 1, 0.0, 0.0).into()],
            truncated: false,
        },
        ServerMessage::Snapshot {
            topic: TOPIC.into(),
            positions: vec![],
            truncated: false,
        },
        ServerMessage::Position {
            topic: TOPIC.into(),
            position: example(),
        },
        ServerMessage::Position {
            topic: TOPIC.into(),
            position: wire("2", 0.5, -0.5, 1, 0.0, 0.0),
        },
        ServerMessage::Unsubscribed {
            topic: TOPIC.into(),
        },
        ServerMessage::Pong,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            topic: Some(TOPIC.into()),
            message: "not allowed".into(),
        },
        ServerMessage::Error {
            code: ErrorCode::BadRequest,
            topic: None,
            message: "message is not valid JSON".into(),
        },
        ServerMessage::Error {
            code: ErrorCode::LimitExceeded,
            topic: None,
            message: "\"quoted\" \\ and ünïcode".into(),
        },
    ] {
        round_trips(&message);
    }
}

#[test]
fn every_message_is_one_json_object_with_a_type() {
    let Value::Object(map) =
        serde_json::from_slice::<Value>(&encode(&ServerMessage::Pong)).unwrap()
    else {
        panic!("not an object")
    };
    assert_eq!(map.get("type"), Some(&json!("pong")));
}

// ---------------------------------------------------------------------------------------
// Properties

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Decimal values whose shortest JSON text parses back exactly with serde_json's default
/// float parser.
fn decimal(min: i64, max: i64) -> impl Strategy<Value = f64> {
    (min * 1_000_000..=max * 1_000_000).prop_map(|i| i as f64 / 1e6)
}

fn wire_position() -> impl Strategy<Value = WirePosition> {
    (
        ".{1,64}",
        decimal(-90, 90),
        decimal(-180, 180),
        0..=UnixMillis::MAX_FIX.as_i64(),
        prop_oneof![Just(0.0), decimal(0, 400)],
        prop_oneof![Just(0.0), decimal(0, 360)],
    )
        .prop_map(|(device_id, lat, lon, ts, speed, course)| WirePosition {
            device_id,
            lat,
            lon,
            ts,
            speed,
            course,
        })
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let topic = any::<u128>().prop_map(|n| Topic(Uuid::from_u128(n)).to_string());
    let code = prop_oneof![
        Just(ErrorCode::Forbidden),
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::LimitExceeded),
    ];
    prop_oneof![
        topic
            .clone()
            .prop_map(|topic| ServerMessage::Subscribed { topic }),
        topic
            .clone()
            .prop_map(|topic| ServerMessage::Unsubscribed { topic }),
        Just(ServerMessage::Pong),
        (topic.clone(), wire_position())
            .prop_map(|(topic, position)| ServerMessage::Position { topic, position }),
        (topic.clone(), prop::collection::vec(wire_position(), 0..4)).prop_map(
            |(topic, positions)| ServerMessage::Snapshot {
                topic,
                positions: positions.into_iter().map(Into::into).collect(),
                truncated: false,
            }
        ),
        (code, prop::option::of(".{0,40}"), ".{0,40}").prop_map(|(code, topic, message)| {
            ServerMessage::Error {
                code,
                topic,
                message,
            }
        }),
    ]
}

/// Objects built from the fields a client message uses, so generated inputs reach the
/// type and topic checks.
fn client_like_object() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(json!("subscribe")),
        Just(json!("unsubscribe")),
        Just(json!("ping")),
        ".{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let topic = prop_oneof![
        any::<u128>().prop_map(|n| json!(format!("event:{}", Uuid::from_u128(n)))),
        any::<u128>().prop_map(|n| json!(format!("event:{}", Uuid::from_u128(n).simple()))),
        ".{0,200}".prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        Just(json!([])),
    ];
    (prop::option::of(kind), prop::option::of(topic)).prop_map(|(kind, topic)| {
        let mut map = serde_json::Map::new();
        if let Some(k) = kind {
            map.insert("type".into(), k);
        }
        if let Some(t) = topic {
            map.insert("topic".into(), t);
        }
        Value::Object(map)
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_client_message(&bytes);
    }

    #[test]
    fn parse_never_panics_on_client_like_objects(value in client_like_object()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        match parse_client_message(&bytes) {
            Ok(ClientMessage::Subscribe(t, _) | ClientMessage::Unsubscribe(t)) => {
                prop_assert_eq!(t.to_string().parse::<Topic>(), Ok(t));
            }
            Ok(ClientMessage::Ping) => {}
            Ok(ClientMessage::Auth(token)) => {
                prop_assert_eq!(&value["token"], &serde_json::Value::String(token));
            }
            Ok(ClientMessage::UnsubscribeReplay(id)) => {
                prop_assert!((1..=64).contains(&id.chars().count()));
            }
            Ok(ClientMessage::Replay(r)) => {
                prop_assert!(r.from <= r.to);
                prop_assert!((0.1..=1000.0).contains(&r.speed));
            }
            Ok(ClientMessage::ReplayControl(c)) => {
                prop_assert!(c.speed.is_some() || c.paused.is_some() || c.seek.is_some());
            }
            Err(e) => {
                if let Some(echo) = &e.topic {
                    prop_assert!(echo.chars().count() <= 128);
                }
            }
        }
    }

    #[test]
    fn any_valid_subscribe_is_accepted(n in any::<u128>(), upper in any::<bool>()) {
        let id = Uuid::from_u128(n).hyphenated().to_string();
        let id = if upper { id.to_uppercase() } else { id };
        let text = format!(r#"{{"type":"subscribe","topic":"event:{id}"}}"#);
        prop_assert_eq!(
            parse(&text),
            Ok(ClientMessage::Subscribe(Topic(Uuid::from_u128(n)), Default::default()))
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let bytes = encode(&message);
        let back: ServerMessage = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(back, message);
    }
}

#[test]
fn auth_carries_its_token_and_needs_one() {
    assert_eq!(
        parse_client_message(br#"{"type":"auth","token":"a.b.c"}"#),
        Ok(ClientMessage::Auth("a.b.c".into()))
    );
    for bad in [r#"{"type":"auth"}"#, r#"{"type":"auth","token":5}"#] {
        assert_eq!(
            parse_client_message(bad.as_bytes()).map_err(|e| e.reason),
            Err(BadRequestReason::MissingToken),
            "{bad}"
        );
    }
}

#[test]
fn replay_messages_are_parsed_and_bad_fields_named() {
    let event = "5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f";
    let ok = format!(
        r#"{{"type":"replay","id":"r1","event":"{event}","from":1,"to":2,"speed":60,"trail_s":0}}"#
    );
    let Ok(ClientMessage::Replay(r)) = parse_client_message(ok.as_bytes()) else {
        panic!("{ok} not parsed");
    };
    assert_eq!((r.id.as_str(), r.from, r.to, r.speed), ("r1", 1, 2, 60.0));
    for (bad, field) in [
        (
            format!(r#"{{"type":"replay","event":"{event}","from":1,"to":2,"speed":1}}"#),
            "`id`",
        ),
        (
            format!(
                r#"{{"type":"replay","id":"{}","event":"{event}","from":1,"to":2,"speed":1}}"#,
                "x".repeat(65)
            ),
            "`id`",
        ),
        (
            r#"{"type":"replay","id":"r","event":"nope","from":1,"to":2,"speed":1}"#.to_owned(),
            "`event`",
        ),
        (
            format!(r#"{{"type":"replay","id":"r","event":"{event}","from":-1,"to":2,"speed":1}}"#),
            "`from`",
        ),
        (
            format!(r#"{{"type":"replay","id":"r","event":"{event}","from":3,"to":2,"speed":1}}"#),
            "`to`",
        ),
        (
            format!(
                r#"{{"type":"replay","id":"r","event":"{event}","from":1,"to":2,"speed":0.05}}"#
            ),
            "`speed`",
        ),
        (
            format!(
                r#"{{"type":"replay","id":"r","event":"{event}","from":1,"to":2,"speed":1001}}"#
            ),
            "`speed`",
        ),
        (
            r#"{"type":"replay_control","id":"r"}"#.to_owned(),
            "`speed`, `paused` or `seek`",
        ),
        (
            r#"{"type":"replay_control","id":"r","paused":1}"#.to_owned(),
            "`paused`",
        ),
        (
            r#"{"type":"replay_control","id":"r","seek":-5}"#.to_owned(),
            "`seek`",
        ),
    ] {
        let error = parse_client_message(bad.as_bytes()).expect_err(&bad);
        assert!(error.reason.to_string().contains(field), "{bad}: {error}");
    }
    assert_eq!(
        parse_client_message(br#"{"type":"unsubscribe","topic":"replay:r1"}"#),
        Ok(ClientMessage::UnsubscribeReplay("r1".into()))
    );
}

#[test]
fn a_replay_event_is_a_hyphenated_uuid() {
    let replay = |event: &str| {
        format!(r#"{{"type":"replay","id":"r","event":"{event}","from":1,"to":2,"speed":1}}"#)
    };
    assert!(parse(&replay("11111111-1111-4111-8111-111111111111")).is_ok());
    // uuid parses these too; the protocol does not take them.
    for other in [
        "11111111111141118111111111111111",
        "{11111111-1111-4111-8111-111111111111}",
    ] {
        assert_eq!(
            bad(&replay(other)).reason,
            BadRequestReason::InvalidReplayEvent
        );
    }
}

#[test]
fn an_export_names_its_format_and_content_type() {
    use processor_core::wire::{parse_export_query, ExportFormat};
    for (format, expected, content_type) in [
        ("geojson", ExportFormat::GeoJson, "application/geo+json"),
        ("gpx", ExportFormat::Gpx, "application/gpx+xml"),
    ] {
        let (_, parsed) =
            parse_export_query(Some(&format!("from=0&to=1&format={format}"))).unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(parsed.content_type(), content_type);
    }
    // One instant is a window; `from` after `to` is not.
    assert!(parse_export_query(Some("from=5&to=5")).is_ok());
    assert!(parse_export_query(Some("from=6&to=5")).is_err());
}
