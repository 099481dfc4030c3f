//! `docs/asyncapi.json` against the wire types: the document names the client messages
//! core parses, its schemas accept every server message core encodes (and the bytes the live
//! hub actually sends), its examples are messages core parses or would encode, and its
//! `ErrorCode` enum and `Topic` pattern are core's.
//!
//! A message's `name` is its `type` on the wire. `auth` is sent both ways, so the document
//! has two messages named `auth` (channel keys `auth` and `authAccepted`), one per direction,
//! with different payloads; any other name is the client's or the server's, not both.
//!
//! The schema checker below supports only the keywords the document uses, and refuses any
//! other: the document cannot grow a constraint this test silently ignores.

#[path = "common/clocks.rs"]
mod clocks;

use clocks::{clocks, wall_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::live::{
    self, Command, ConnId, DeviceMap, Grant, Ingest, IngestInput, Input, LiveConfig, LiveHub,
    LookupFailed, Principal, TokenRefused, Visibility, FORBIDDEN_MESSAGE,
};
use processor_core::stream::EntryId;
use processor_core::websocket::{ClientFrame, Opcode};
use processor_core::wire::{
    encode, parse_client_message, position_message, BadRequestReason, ClientMessage, ErrorCode,
    ServerMessage, SnapshotPosition, Topic, WirePosition,
};
use processor_core::{Position, UnixMillis};

const DOC: &str = include_str!("../../docs/asyncapi.json");

const UUID: &str = "5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f";
const T0: i64 = 1_764_324_000_000;

fn doc() -> Value {
    serde_json::from_str(DOC).expect("docs/asyncapi.json is not JSON")
}

fn topic() -> Topic {
    Topic(Uuid::parse_str(UUID).unwrap())
}

// ---------------------------------------------------------------------------------------
// What core has. Each list comes with an exhaustive match, so that a new variant does not
// compile until it is listed here (and then the document must describe it).

/// The client message kinds core parses.
const CLIENT_KINDS: [&str; 6] = [
    "subscribe",
    "unsubscribe",
    "ping",
    "auth",
    "replay",
    "replay_control",
];

fn client_kind(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Subscribe(..) => "subscribe",
        ClientMessage::Unsubscribe(_) | ClientMessage::UnsubscribeReplay(_) => "unsubscribe",
        ClientMessage::Replay(_) => "replay",
        ClientMessage::ReplayControl(_) => "replay_control",
        ClientMessage::Ping => "ping",
        ClientMessage::Auth(_) => "auth",
    }
}

/// The server message kinds core encodes.
const SERVER_KINDS: [&str; 8] = [
    "subscribed",
    "snapshot",
    "position",
    "unsubscribed",
    "replay_end",
    "pong",
    "auth",
    "error",
];

fn server_kind(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Subscribed { .. } => "subscribed",
        ServerMessage::Snapshot { .. } => "snapshot",
        ServerMessage::Position { .. } => "position",
        ServerMessage::Unsubscribed { .. } => "unsubscribed",
        ServerMessage::ReplayEnd { .. } => "replay_end",
        ServerMessage::Pong => "pong",
        ServerMessage::Auth { .. } => "auth",
        ServerMessage::Error { .. } => "error",
    }
}

/// Every error code core has; `error_code_index` keeps the list complete.
const ERROR_CODES: [ErrorCode; 4] = [
    ErrorCode::Forbidden,
    ErrorCode::BadRequest,
    ErrorCode::LimitExceeded,
    ErrorCode::Unauthorized,
];

fn error_code_index(code: ErrorCode) -> usize {
    match code {
        ErrorCode::Forbidden => 0,
        ErrorCode::BadRequest => 1,
        ErrorCode::LimitExceeded => 2,
        ErrorCode::Unauthorized => 3,
    }
}

fn moving() -> WirePosition {
    WirePosition {
        device_id: "356307042441013".into(),
        lat: 54.68,
        lon: 25.28,
        ts: T0,
        speed: 42.0,
        course: 270.0,
    }
}

/// Speed and course 0: both omitted on the wire.
fn standing_still() -> WirePosition {
    WirePosition {
        device_id: "356307042441021".into(),
        lat: -33.8688,
        lon: -151.2093,
        ts: T0 - 5_000,
        speed: 0.0,
        course: 0.0,
    }
}

fn position(speed: f64, angle: f64) -> Position {
    Position {
        device_id: "356307042441013".into(),
        ts: UnixMillis(T0),
        latitude: 54.68,
        longitude: 25.28,
        altitude: 112.0,
        angle,
        speed,
        satellites: 9,
        priority: 0,
        event_io_id: Some(240),
        attributes: BTreeMap::new(),
    }
}

/// One of each server message core encodes, in every shape: optional fields present and
/// omitted, an error of every code with and without a topic.
fn server_samples() -> Vec<(&'static str, Bytes)> {
    let t = topic().to_string();
    let mut messages = vec![
        ServerMessage::Subscribed { topic: t.clone() },
        ServerMessage::Snapshot {
            topic: t.clone(),
            positions: vec![moving().into(), standing_still().into()],
            truncated: false,
        },
        ServerMessage::Snapshot {
            topic: t.clone(),
            positions: vec![
                SnapshotPosition {
                    position: moving(),
                    trail: Some(vec![(T0 - 2_000, 54.6, 25.2), (T0 - 1_000, 54.7, 25.3)]),
                },
                SnapshotPosition {
                    position: standing_still(),
                    trail: Some(vec![]),
                },
            ],
            truncated: false,
        },
        ServerMessage::Snapshot {
            topic: t.clone(),
            positions: vec![moving().into()],
            truncated: true,
        },
        ServerMessage::Snapshot {
            topic: t.clone(),
            positions: vec![],
            truncated: false,
        },
        ServerMessage::Position {
            topic: t.clone(),
            position: moving(),
        },
        ServerMessage::Position {
            topic: t.clone(),
            position: standing_still(),
        },
        ServerMessage::Unsubscribed { topic: t.clone() },
        ServerMessage::Subscribed {
            topic: "replay:finish".into(),
        },
        ServerMessage::Position {
            topic: "replay:finish".into(),
            position: moving(),
        },
        ServerMessage::ReplayEnd {
            topic: "replay:finish".into(),
        },
        ServerMessage::Pong,
        ServerMessage::Auth { exp: 1_764_327_600 },
        ServerMessage::Auth { exp: 0 },
    ];
    for code in ERROR_CODES {
        messages.push(ServerMessage::Error {
            code,
            topic: Some(t.clone()),
            message: FORBIDDEN_MESSAGE.into(),
        });
        messages.push(ServerMessage::Error {
            code,
            topic: None,
            message: "message is not valid JSON".into(),
        });
    }
    let mut samples: Vec<(&'static str, Bytes)> = messages
        .iter()
        .map(|m| (server_kind(m), encode(m)))
        .collect();
    samples.push((
        "position",
        position_message(&topic(), &position(42.0, 270.0)),
    ));
    samples.push(("position", position_message(&topic(), &position(0.0, 0.0))));
    samples
}

// ---------------------------------------------------------------------------------------
// Reading the document.

/// `value`, or what its `$ref` (a `#/...` pointer into the document) points at, followed
/// to the end.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = value.get("$ref") else {
            return value;
        };
        let pointer = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .unwrap_or_else(|| panic!("$ref {reference} is not local"));
        value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference} points at nothing"));
    }
    panic!("$ref cycle at {value}")
}

/// The messages of the operations with `action`, by message name: "receive" are the
/// client's messages, "send" the server's.
fn messages_of<'a>(doc: &'a Value, action: &str) -> BTreeMap<String, &'a Value> {
    let mut out = BTreeMap::new();
    let operations = doc["operations"].as_object().expect("no operations");
    for operation in operations.values() {
        if operation["action"] != action {
            continue;
        }
        for m in operation["messages"]
            .as_array()
            .expect("operation without messages")
        {
            let message = resolve(doc, m);
            let name = message["name"].as_str().expect("message without a name");
            out.insert(name.to_owned(), message);
        }
    }
    out
}

fn payload<'a>(doc: &'a Value, message: &'a Value) -> &'a Value {
    resolve(doc, &message["payload"])
}

fn examples(message: &Value) -> &[Value] {
    message["examples"].as_array().map_or(&[], Vec::as_slice)
}

fn names(map: &BTreeMap<String, &Value>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// A JSON Schema checker for the keywords the document uses.

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 3] = ["title", "description", "examples"];
/// Keywords `check` enforces.
const ASSERTIONS: [&str; 17] = [
    "$ref",
    "type",
    "const",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "additionalItems",
    "minItems",
    "anyOf",
];

/// Where `value` breaks `schema`, one line per violation.
fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, value, "$", &mut out);
    out
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    let keywords = schema.as_object().expect("a schema is an object");
    for k in keywords.keys() {
        let known = ANNOTATIONS.contains(&k.as_str()) || ASSERTIONS.contains(&k.as_str());
        assert!(known, "{at}: the checker does not know the keyword {k}");
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let passes = any.iter().any(|sub| {
            let mut none = Vec::new();
            check(doc, sub, value, at, &mut none);
            none.is_empty()
        });
        if !passes {
            out.push(format!("{at}: matches none of anyOf: {value}"));
        }
    }
    let mut fail = |what: String| out.push(format!("{at}: {what}: {value}"));
    if let Some(t) = schema.get("type") {
        let ok = match t.as_str().expect("type is one string") {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            other => panic!("{at}: type {other} is not supported"),
        };
        if !ok {
            fail(format!("is not of type {t}"));
        }
    }
    if schema.get("const").is_some_and(|c| c != value) {
        fail(format!("is not {}", schema["const"]));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            fail("is not in the enum".into());
        }
    }
    let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if bound("minimum").is_some_and(|b| n < b) {
            fail("is below minimum".into());
        }
        if bound("maximum").is_some_and(|b| n > b) {
            fail("is above maximum".into());
        }
        if bound("exclusiveMinimum").is_some_and(|b| n <= b) {
            fail("is not above exclusiveMinimum".into());
        }
    }
    if let Some(s) = value.as_str() {
        let chars = s.chars().count() as f64;
        if bound("minLength").is_some_and(|b| chars < b) {
            fail("is shorter than minLength".into());
        }
        if bound("maxLength").is_some_and(|b| chars > b) {
            fail("is longer than maxLength".into());
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            if !matches_pattern(p, s) {
                fail(format!("does not match {p}"));
            }
        }
    }
    if schema.get("type").is_some_and(|t| t == "object") {
        // The document's rule for every object: closed, and saying what it requires.
        assert_eq!(
            schema.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{at}: an object schema without additionalProperties: false"
        );
        assert!(schema["required"].is_array(), "{at}: no required");
    }
    if let Some(fields) = value.as_object() {
        let required = schema.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten() {
            let name = name.as_str().expect("required names are strings");
            if !fields.contains_key(name) {
                fail(format!("lacks required {name}"));
            }
        }
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        let declared = schema.get("properties").and_then(Value::as_object);
        for (name, field) in fields {
            match declared.and_then(|d| d.get(name)) {
                Some(sub) => check(doc, sub, field, &format!("{at}.{name}"), out),
                None if closed => out.push(format!("{at}: undeclared property {name}")),
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        // `items` as a list is a tuple (draft 7): one schema per position, and with
        // `additionalItems: false` nothing after them.
        let tuple = items.as_array();
        for (i, item) in array.iter().enumerate() {
            let at = format!("{at}[{i}]");
            match tuple {
                None => check(doc, items, item, &at, out),
                Some(schemas) => match schemas.get(i) {
                    Some(sub) => check(doc, sub, item, &at, out),
                    None if schema.get("additionalItems") == Some(&Value::Bool(false)) => {
                        out.push(format!("{at}: an item beyond the tuple"))
                    }
                    None => {}
                },
            }
        }
    }
    if let (Some(min), Some(array)) = (bound("minItems"), value.as_array()) {
        if (array.len() as f64) < min {
            out.push(format!("{at}: fewer items than minItems: {value}"));
        }
    }
}

/// Whether `s` matches `pattern`, a regular expression limited to what the document uses:
/// anchored `^...$`, literal characters, bracket classes of characters and ranges, and
/// `{n}` repetition. Anything else panics.
fn matches_pattern(pattern: &str, s: &str) -> bool {
    let body = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("pattern {pattern} is not anchored"));
    let mut p = body.chars().peekable();
    let mut input = s.chars();
    while let Some(c) = p.next() {
        let ranges: Vec<(char, char)> = match c {
            '[' => {
                let class: Vec<char> = p.by_ref().take_while(|&c| c != ']').collect();
                let mut ranges = Vec::new();
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        ranges.push((class[i], class[i + 2]));
                        i += 3;
                    } else {
                        ranges.push((class[i], class[i]));
                        i += 1;
                    }
                }
                ranges
            }
            '\\' | '*' | '+' | '?' | '(' | ')' | '|' | '{' | '}' | '^' | '$' | ']' => {
                panic!("pattern {pattern}: {c} is not supported")
            }
            // Any character; only as the pattern's last item (it is matched greedily,
            // without backtracking).
            '.' => vec![('\0', char::MAX)],
            literal => vec![(literal, literal)],
        };
        let (least, most) = if p.peek() == Some(&'{') {
            p.next();
            let digits: String = p.by_ref().take_while(|&c| c != '}').collect();
            match digits.split_once(',') {
                Some((m, n)) => (
                    m.parse().expect("{m,n} with numbers"),
                    n.parse().expect("{m,n} with numbers"),
                ),
                None => {
                    let n: usize = digits.parse().expect("{n} with a number");
                    (n, n)
                }
            }
        } else {
            (1, 1)
        };
        if c == '.' {
            assert!(p.peek().is_none(), "pattern {pattern}: . only at the end");
        }
        let mut taken = 0;
        while taken < most {
            let mut ahead = input.clone();
            match ahead.next() {
                Some(x) if ranges.iter().any(|&(lo, hi)| lo <= x && x <= hi) => {
                    input = ahead;
                    taken += 1;
                }
                _ => break,
            }
        }
        if taken < least {
            return false;
        }
    }
    input.next().is_none()
}

fn topic_pattern(doc: &Value) -> String {
    doc["components"]["schemas"]["Topic"]["pattern"]
        .as_str()
        .expect("Topic has a pattern")
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// The document's shape.

#[test]
fn the_document_describes_one_websocket_at_live() {
    let doc = doc();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "Processor live WebSocket API");
    assert_eq!(doc["info"]["version"], "1");
    let servers = doc["servers"].as_object().unwrap();
    assert_eq!(servers.len(), 1);
    let server = servers.values().next().unwrap();
    assert_eq!(server["host"], "localhost:8080");
    assert_eq!(server["protocol"], "ws");
    // The path is the channel's address alone: tools join the two.
    assert!(server.get("pathname").is_none());
    let schemes: Vec<&Value> = server["security"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| resolve(&doc, s))
        .collect();
    assert!(schemes
        .iter()
        .any(|s| s["type"] == "http" && s["scheme"] == "bearer" && s["bearerFormat"] == "JWT"));
    assert!(schemes
        .iter()
        .any(|s| s["type"] == "httpApiKey" && s["in"] == "query" && s["name"] == "access_token"));

    let channels = doc["channels"].as_object().unwrap();
    assert_eq!(channels.len(), 1, "one WebSocket, one channel");
    let channel = channels.values().next().unwrap();
    assert_eq!(channel["address"], "/live");
    for operation in doc["operations"].as_object().unwrap().values() {
        assert!(std::ptr::eq(resolve(&doc, &operation["channel"]), channel));
    }

    // Every message of the channel is the client's or the server's, not both. A name is in
    // both directions only where core has that `type` in both, and then as two messages with
    // different payloads.
    let client = messages_of(&doc, "receive");
    let server = messages_of(&doc, "send");
    let shared: BTreeSet<String> = names(&client)
        .intersection(&names(&server))
        .cloned()
        .collect();
    let shared_in_core: BTreeSet<String> = set(&CLIENT_KINDS)
        .intersection(&set(&SERVER_KINDS))
        .cloned()
        .collect();
    assert_eq!(shared, shared_in_core);
    for name in &shared {
        assert!(!std::ptr::eq(client[name], server[name]), "{name}");
        assert_ne!(
            payload(&doc, client[name]),
            payload(&doc, server[name]),
            "{name}"
        );
    }
    // The channel lists exactly the operations' messages, each once.
    let all: BTreeSet<*const Value> = client
        .values()
        .chain(server.values())
        .map(|m| *m as *const Value)
        .collect();
    assert_eq!(all.len(), client.len() + server.len());
    let in_channel: Vec<*const Value> = channel["messages"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| resolve(&doc, m) as *const Value)
        .collect();
    assert_eq!(in_channel.len(), all.len(), "a message listed twice");
    assert_eq!(in_channel.into_iter().collect::<BTreeSet<_>>(), all);
    // Replies are server messages.
    for operation in doc["operations"].as_object().unwrap().values() {
        for m in operation["reply"]["messages"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = resolve(&doc, m)["name"].as_str().unwrap();
            assert!(server.contains_key(name), "reply {name} is not sent");
        }
    }

    // Each message: a closed payload whose `type` is its name, and at least one example.
    for (name, message) in client.iter().chain(&server) {
        let payload = payload(&doc, message);
        assert_eq!(payload["additionalProperties"], false, "{name}");
        assert!(payload["required"]
            .as_array()
            .unwrap()
            .contains(&json!("type")));
        assert_eq!(
            payload["properties"]["type"]["const"],
            json!(name),
            "{name}"
        );
        assert!(!examples(message).is_empty(), "{name} has no example");
    }
}

#[test]
fn every_ref_in_the_document_resolves() {
    fn walk(doc: &Value, value: &Value, refs: &mut usize) {
        match value {
            Value::Object(fields) => {
                if fields.contains_key("$ref") {
                    resolve(doc, value);
                    *refs += 1;
                }
                fields.values().for_each(|v| walk(doc, v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, refs)),
            _ => {}
        }
    }
    let doc = doc();
    let mut refs = 0;
    walk(&doc, &doc, &mut refs);
    assert!(refs > 0);
}

// ---------------------------------------------------------------------------------------
// Client messages.

#[test]
fn the_client_messages_are_those_core_parses() {
    let t = topic().to_string();
    for kind in CLIENT_KINDS {
        let text = json!({
            "type": kind, "topic": t, "token": "a.b.c",
            "id": "r", "event": UUID, "from": 0, "to": 1, "speed": 1,
        })
        .to_string();
        let parsed = parse_client_message(text.as_bytes())
            .unwrap_or_else(|e| panic!("core refuses {text}: {e}"));
        assert_eq!(client_kind(&parsed), kind);
    }
    assert_eq!(names(&messages_of(&doc(), "receive")), set(&CLIENT_KINDS));
}

#[test]
fn client_examples_parse_to_the_message_they_are_named_after() {
    let doc = doc();
    for (name, message) in messages_of(&doc, "receive") {
        for example in examples(message) {
            let body = &example["payload"];
            assert!(example["name"].is_string(), "{name}: unnamed example");
            let broken = violations(&doc, payload(&doc, message), body);
            assert!(broken.is_empty(), "{name} example: {broken:?}");
            let parsed = parse_client_message(body.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{name} example {body}: {e}"));
            assert_eq!(client_kind(&parsed), name, "{body}");
            match parsed {
                ClientMessage::Subscribe(t, _) | ClientMessage::Unsubscribe(t) => {
                    let sent = body["topic"].as_str().unwrap();
                    assert_eq!(t.to_string(), sent.to_lowercase(), "{body}");
                }
                ClientMessage::UnsubscribeReplay(id) => {
                    assert_eq!(body["topic"], json!(format!("replay:{id}")), "{body}");
                }
                ClientMessage::Replay(r) => {
                    assert_eq!(body["id"], json!(r.id), "{body}");
                    assert_eq!(body["event"], json!(r.event.to_string()), "{body}");
                }
                ClientMessage::ReplayControl(c) => assert_eq!(body["id"], json!(c.id), "{body}"),
                ClientMessage::Ping => assert!(body.get("topic").is_none(), "{body}"),
                ClientMessage::Auth(token) => {
                    assert_eq!(body["token"], json!(token), "{body}");
                    assert!(body.get("topic").is_none(), "{body}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server messages.

#[test]
fn every_server_message_core_encodes_matches_its_schema() {
    let doc = doc();
    let server = messages_of(&doc, "send");
    assert_eq!(names(&server), set(&SERVER_KINDS));
    let samples = server_samples();
    let covered: BTreeSet<&str> = samples.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(covered, SERVER_KINDS.into_iter().collect());

    let mut omitted = 0;
    for (kind, bytes) in &samples {
        let value: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(value["type"], *kind);
        let broken = violations(&doc, payload(&doc, server[*kind]), &value);
        assert!(broken.is_empty(), "{value}: {broken:?}");
        if *kind == "position" && value.get("speed").is_none() && value.get("course").is_none() {
            omitted += 1;
        }
    }
    // The samples do exercise the omitted optional fields.
    assert_eq!(omitted, 2);
}

#[test]
fn server_examples_are_messages_core_would_encode() {
    let doc = doc();
    for (name, message) in messages_of(&doc, "send") {
        for example in examples(message) {
            let body = &example["payload"];
            assert!(example["name"].is_string(), "{name}: unnamed example");
            let broken = violations(&doc, payload(&doc, message), body);
            assert!(broken.is_empty(), "{name} example: {broken:?}");
            // Read back with core's types and encoded again, the example is unchanged: it
            // has no field core lacks, and none core would omit (a speed of 0, say).
            let decoded: ServerMessage = serde_json::from_value(body.clone())
                .unwrap_or_else(|e| panic!("{name} example {body}: {e}"));
            assert_eq!(server_kind(&decoded), name);
            let again: Value = serde_json::from_slice(&encode(&decoded)).unwrap();
            assert_eq!(&again, body);
        }
    }
}

#[test]
fn the_error_codes_are_core_s() {
    for (i, code) in ERROR_CODES.into_iter().enumerate() {
        assert_eq!(error_code_index(code), i);
    }
    let encoded: BTreeSet<String> = ERROR_CODES
        .into_iter()
        .map(|code| {
            let bytes = encode(&ServerMessage::Error {
                code,
                topic: None,
                message: String::new(),
            });
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            value["code"].as_str().unwrap().to_owned()
        })
        .collect();
    let doc = doc();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(documented, encoded);
    // And the error message's `code` is that enum.
    let error = payload(&doc, messages_of(&doc, "send")["error"]);
    assert!(std::ptr::eq(
        resolve(&doc, &error["properties"]["code"]),
        &doc["components"]["schemas"]["ErrorCode"]
    ));
}

/// Every message the live hub sends in a conversation that reaches each server message and
/// each error path, checked against the document by its `type`.
#[test]
fn what_the_live_hub_sends_matches_the_document() {
    let doc = doc();
    let server = messages_of(&doc, "send");
    let now = UnixMillis(T0 + 10_000);
    let public = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    let other = Uuid::from_u128(0x3333_3333_3333_4333_8333_3333_3333_3333);
    let unknown = Uuid::from_u128(0x9999_9999_9999_4999_8999_9999_9999_9999);
    let (moving, still) = ("356307042441013", "356307042441021");
    let conn = ConnId(1);
    let config = LiveConfig {
        max_subscriptions: 2,
        ..LiveConfig::default()
    };
    let mut ingest = Ingest::new(&config);
    let mut hub = LiveHub::new(config, clocks(now));
    let devices = [(moving, public), (still, public)];
    let map = Arc::new(DeviceMap::new(
        1,
        devices
            .iter()
            .map(|(d, e)| (d.to_string(), BTreeSet::from([*e])))
            .collect(),
    ));
    ingest.handle(now, IngestInput::DeviceMap(Arc::clone(&map)));
    hub.handle(clocks(now), Input::DeviceMap(map));
    hub.handle(
        clocks(now),
        Input::Connected {
            conn,
            principal: Principal::Anonymous,
            expires_at: None,
        },
    );

    // The JSON of every text frame sent; `drain` returns the other commands (requests to
    // the shell).
    let mut sent: Vec<Bytes> = Vec::new();
    let mut drain = |hub: &mut LiveHub| {
        let mut requests = Vec::new();
        while let Some(command) = hub.poll_command() {
            match command {
                Command::Send { frame, .. } => match frame.opcode() {
                    Some(Opcode::Text) => sent.push(Bytes::copy_from_slice(frame.payload())),
                    Some(Opcode::Ping) => {}
                    other => panic!("unexpected {other:?} frame: {frame:?}"),
                },
                Command::Authorize { .. }
                | Command::LoadSnapshot { .. }
                | Command::LoadReplaySnapshot { .. }
                | Command::LoadReplayPage { .. }
                | Command::VerifyToken { .. } => requests.push(command),
                Command::Close { code, .. } => panic!("closed with {code}"),
            }
        }
        requests
    };
    let text = |hub: &mut LiveHub, t: &str| {
        hub.handle(
            clocks(now),
            live::text(conn, Bytes::copy_from_slice(t.as_bytes())),
        )
    };
    // A stream read, judged by the ingest, its batch handed to the hub.
    let mut positions = |hub: &mut LiveHub, entries: Vec<(EntryId, Option<Bytes>)>| {
        ingest.handle(now, IngestInput::Entries(entries));
        while let Some(batch) = ingest.poll_batch() {
            hub.handle(clocks(now), Input::Batch(batch));
        }
    };
    let failed = || LookupFailed("postgres away".into());
    let subscribe = |e: Uuid| format!(r#"{{"type":"subscribe","topic":"event:{e}"}}"#);
    let fix = |device: &str, dt: i64, speed: f64| {
        let angle = if speed > 0.0 { 270.0 } else { 0.0 };
        let payload = json!({
            "device_id": device, "timestamp": T0 + dt, "latitude": 54.68, "longitude": 25.28,
            "satellites": 9, "speed": speed, "angle": angle,
        });
        (
            EntryId::new(1, dt as u64),
            Some(Bytes::from(payload.to_string())),
        )
    };
    let row = |device: &str, dt: i64, speed: f64| WirePosition {
        device_id: device.into(),
        lat: 54.68,
        lon: 25.28,
        ts: T0 + dt,
        speed,
        course: speed,
    };

    text(&mut hub, r#"{"type":"ping"}"#);
    // subscribed; a position while the snapshot loads; snapshot; then live positions.
    text(&mut hub, &subscribe(public));
    let [Command::Authorize {
        request: authorize, ..
    }] = drain(&mut hub)[..]
    else {
        panic!("no Authorize")
    };
    hub.handle(
        clocks(now),
        Input::Visibility {
            request: authorize,
            visibility: Ok(Visibility::Public),
        },
    );
    let [Command::LoadSnapshot { request: load, .. }] = drain(&mut hub)[..] else {
        panic!("no LoadSnapshot")
    };
    positions(&mut hub, vec![fix(moving, 1_000, 0.0)]);
    hub.handle(
        clocks(now),
        Input::Snapshot {
            request: load,
            rows: Ok(vec![row(moving, 0, 12.5), row(still, 0, 0.0)]),
        },
    );
    positions(
        &mut hub,
        vec![fix(still, 2_000, 42.0), fix(moving, 3_000, 0.0)],
    );
    // forbidden: an unknown event.
    text(&mut hub, &subscribe(unknown));
    let [Command::Authorize {
        request: authorize, ..
    }] = drain(&mut hub)[..]
    else {
        panic!("no Authorize")
    };
    hub.handle(
        clocks(now),
        Input::Visibility {
            request: authorize,
            visibility: Ok(Visibility::Unknown),
        },
    );
    // limit_exceeded: a third topic while a second is being authorized; then the second's
    // access check fails, and its retry's snapshot fails.
    text(&mut hub, &subscribe(other));
    let [Command::Authorize {
        request: authorize, ..
    }] = drain(&mut hub)[..]
    else {
        panic!("no Authorize")
    };
    text(&mut hub, &subscribe(unknown));
    hub.handle(
        clocks(now),
        Input::Visibility {
            request: authorize,
            visibility: Err(failed()),
        },
    );
    text(&mut hub, &subscribe(other));
    let [Command::Authorize {
        request: authorize, ..
    }] = drain(&mut hub)[..]
    else {
        panic!("no Authorize")
    };
    hub.handle(
        clocks(now),
        Input::Visibility {
            request: authorize,
            visibility: Ok(Visibility::Public),
        },
    );
    let [Command::LoadSnapshot { request: load, .. }] = drain(&mut hub)[..] else {
        panic!("no LoadSnapshot")
    };
    hub.handle(
        clocks(now),
        Input::Snapshot {
            request: load,
            rows: Err(failed()),
        },
    );
    // auth: a token accepted; the subscription held is checked against its claims at once,
    // and ends with `forbidden` (its event was made private, and the token grants another).
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3NjQzMjc2MDB9.c2ln";
    text(&mut hub, &format!(r#"{{"type":"auth","token":"{token}"}}"#));
    let commands = drain(&mut hub);
    let [Command::VerifyToken {
        conn: verify,
        token: asked,
    }] = &commands[..]
    else {
        panic!("no VerifyToken")
    };
    assert_eq!((*verify, asked.as_str()), (conn, token));
    let granted = Grant {
        principal: Principal::from_claims([other.to_string().as_str()], None),
        expires_at: UnixMillis(T0 + 3_600_000),
    };
    hub.handle(
        clocks(now),
        Input::TokenVerified {
            conn,
            result: Ok(granted),
        },
    );
    let [Command::Authorize {
        request: recheck,
        topic: rechecked,
        ..
    }] = drain(&mut hub)[..]
    else {
        panic!("no re-check")
    };
    assert_eq!(rechecked, Topic(public));
    hub.handle(
        clocks(now),
        Input::Visibility {
            request: recheck,
            visibility: Ok(Visibility::Private),
        },
    );
    // unauthorized: a token refused, which changes nothing.
    text(&mut hub, r#"{"type":"auth","token":"not a token"}"#);
    let [Command::VerifyToken { .. }] = drain(&mut hub)[..] else {
        panic!("no VerifyToken")
    };
    hub.handle(
        clocks(now),
        Input::TokenVerified {
            conn,
            result: Err(TokenRefused("the token is not a well-formed JWT".into())),
        },
    );
    // unsubscribed: a topic no longer held and one never held.
    text(
        &mut hub,
        &format!(r#"{{"type":"unsubscribe","topic":"event:{public}"}}"#),
    );
    text(
        &mut hub,
        &format!(r#"{{"type":"unsubscribe","topic":"event:{other}"}}"#),
    );
    // bad_request, with and without a topic.
    text(&mut hub, "{not json");
    text(&mut hub, r#"{"type":"subscribe","topic":"event:42"}"#);
    text(&mut hub, r#"{"type":"publish","topic":"anything"}"#);
    text(&mut hub, r#"{"type":"auth","token":42}"#);
    let too_long = "x".repeat(hub.config().max_message_bytes + 1);
    text(&mut hub, &too_long);
    hub.handle(
        clocks(now),
        Input::Frame {
            conn,
            frame: Ok(ClientFrame::Binary),
        },
    );
    // limit_exceeded without a topic: a second later the rate allows a full burst again, and
    // one message more is over it.
    let later = UnixMillis(T0 + 11_000);
    for _ in 0..=hub.config().max_messages_per_s {
        hub.handle(
            clocks(later),
            live::text(conn, Bytes::from_static(br#"{"type":"ping"}"#)),
        );
    }
    assert!(drain(&mut hub).is_empty());
    assert!(hub.is_open(conn));
    // A replay to its end: subscribed, snapshot, a position, replay_end (the rate allows
    // a burst again two seconds later).
    let t = UnixMillis(T0 + 13_000);
    let replay = format!(
        r#"{{"type":"replay","id":"r","event":"{public}","from":{},"to":{},"speed":1000}}"#,
        T0 - 10_000,
        T0 - 9_000
    );
    hub.handle(clocks(t), live::text(conn, Bytes::from(replay)));
    let [Command::Authorize { request, .. }] = drain(&mut hub)[..] else {
        panic!("no Authorize for the replay")
    };
    hub.handle(
        clocks(t),
        Input::Visibility {
            request,
            visibility: Ok(Visibility::Public),
        },
    );
    let [Command::LoadReplaySnapshot { request, .. }] = drain(&mut hub)[..] else {
        panic!("no replay snapshot")
    };
    hub.handle(
        clocks(t),
        Input::ReplaySnapshot {
            request,
            rows: Ok(vec![]),
        },
    );
    let [Command::LoadReplayPage { request, .. }] = drain(&mut hub)[..] else {
        panic!("no replay page")
    };
    let row = WirePosition {
        device_id: moving.into(),
        lat: 54.68,
        lon: 25.28,
        ts: T0 - 9_500,
        speed: 42.0,
        course: 270.0,
    };
    hub.handle(
        clocks(t),
        Input::ReplayPage {
            request,
            rows: Ok(vec![row]),
        },
    );
    let due = hub
        .poll_timeout()
        .map(wall_of)
        .expect("the replay's clock has a deadline");
    hub.handle(clocks(due.max(t)), Input::Timeout);
    let end = hub.poll_timeout().map(wall_of).expect("then the end");
    hub.handle(clocks(end), Input::Timeout);
    assert!(drain(&mut hub).is_empty());

    let mut kinds = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for bytes in &sent {
        let value: Value = serde_json::from_slice(bytes).unwrap();
        let kind = value["type"].as_str().unwrap().to_owned();
        let message = server
            .get(&kind)
            .unwrap_or_else(|| panic!("{value}: type not in the document"));
        let broken = violations(&doc, payload(&doc, message), &value);
        assert!(broken.is_empty(), "{value}: {broken:?}");
        if let Some(code) = value["code"].as_str() {
            codes.insert((code.to_owned(), value.get("topic").is_some()));
        }
        kinds.insert(kind);
    }
    assert_eq!(kinds, set(&SERVER_KINDS), "not every message was reached");
    let expected_codes: BTreeSet<(String, bool)> = [
        ("forbidden", true),
        ("limit_exceeded", true),
        ("limit_exceeded", false),
        ("bad_request", true),
        ("bad_request", false),
        ("unauthorized", false),
    ]
    .into_iter()
    .map(|(c, t)| (c.to_owned(), t))
    .collect();
    assert_eq!(codes, expected_codes);
    // The re-check after `auth` did end the subscription to the event made private.
    let ended = json!({
        "type": "error",
        "code": "forbidden",
        "topic": format!("event:{public}"),
        "message": FORBIDDEN_MESSAGE,
    });
    assert!(sent
        .iter()
        .any(|b| serde_json::from_slice::<Value>(b).unwrap() == ended));
}

// ---------------------------------------------------------------------------------------
// Topics.

#[test]
fn the_topic_pattern_accepts_what_the_parser_accepts() {
    let pattern = topic_pattern(&doc());
    let hyphenated = format!("event:{UUID}");
    let samples = [
        hyphenated.clone(),
        hyphenated.to_uppercase().replace("EVENT:", "event:"),
        "event:5F0c2D1e-8A4b-4C3d-9E2f-1A2b3C4d5E6f".into(),
        "event:00000000-0000-0000-0000-000000000000".into(),
        format!("event:{}", "-".repeat(36)),
        format!("event:{}", UUID.replace('-', "")),
        format!("event:{{{UUID}}}"),
        format!("event:urn:uuid:{UUID}"),
        "event:5f0c2d1e8-a4b-4c3d-9e2f-1a2b3c4d5e6f".into(),
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6g".into(),
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6".into(),
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f0".into(),
        "event:5f0c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6é".into(),
        format!("Event:{UUID}"),
        format!("event: {UUID}"),
        format!("event:{UUID}\n"),
        UUID.into(),
        String::new(),
    ];
    let mut accepted = 0;
    for s in &samples {
        let parses = s.parse::<Topic>().is_ok();
        assert_eq!(matches_pattern(&pattern, s), parses, "{s:?}");
        accepted += usize::from(parses);
    }
    assert_eq!(accepted, 4);
}

fn topic_text_strategy() -> impl Strategy<Value = String> {
    let pattern = topic_pattern(&doc());
    let body = pattern[1..pattern.len() - 1].to_owned();
    proptest::string::string_regex(&body).expect("proptest reads the Topic pattern")
}

proptest! {
    /// Whatever the pattern allows, the parser accepts, and writes back in lower case.
    #[test]
    fn strings_the_topic_pattern_allows_parse(s in topic_text_strategy()) {
        let parsed = s.parse::<Topic>();
        prop_assert!(parsed.is_ok(), "{:?}", s);
        prop_assert_eq!(parsed.unwrap().to_string(), s.to_lowercase());
    }

    /// Near misses of a valid topic (a character replaced, inserted or removed): the pattern
    /// and the parser agree.
    #[test]
    fn the_topic_pattern_and_parser_agree_on_near_misses(
        id in any::<u128>(),
        upper in any::<bool>(),
        edit in 0..3u8,
        at in 0usize..48,
        c in prop::sample::select(vec!['-', '0', '9', 'a', 'F', 'g', 'G', ':', '{', ' ']),
    ) {
        let pattern = topic_pattern(&doc());
        let id = Uuid::from_u128(id).hyphenated().to_string();
        let id = if upper { id.to_uppercase() } else { id };
        let mut chars: Vec<char> = format!("event:{id}").chars().collect();
        let at = at % chars.len();
        match edit {
            0 => chars[at] = c,
            1 => chars.insert(at, c),
            _ => { chars.remove(at); }
        }
        let s: String = chars.into_iter().collect();
        prop_assert_eq!(matches_pattern(&pattern, &s), s.parse::<Topic>().is_ok(), "{:?}", s);
    }
}

// ---------------------------------------------------------------------------------------
// The checker itself: it refuses what the document forbids.

#[test]
fn the_checker_refuses_what_the_schemas_forbid() {
    let doc = doc();
    let server = messages_of(&doc, "send");
    let schema = |kind: &str| payload(&doc, server[kind]);
    let t = topic().to_string();
    let good = serde_json::from_slice::<Value>(&position_message(&topic(), &position(42.0, 270.0)))
        .unwrap();
    assert_eq!(
        violations(&doc, schema("position"), &good),
        Vec::<String>::new()
    );

    let with = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut v = good.clone();
        edit(v.as_object_mut().unwrap());
        v
    };
    let set_field = |name: &str, v: Value| {
        with(&|m| {
            m.insert(name.to_owned(), v.clone());
        })
    };
    let bad_positions = [
        with(&|m| {
            m.remove("ts");
        }),
        set_field("alt", json!(112.0)),
        set_field("lat", json!("54.68")),
        set_field("lat", json!(91.0)),
        set_field("ts", json!(1.5)),
        set_field("speed", json!(0.0)),
        set_field("course", json!(360.5)),
        set_field("deviceId", json!("")),
        set_field("type", json!("positions")),
        set_field("topic", json!("event:42")),
    ];
    for bad in &bad_positions {
        assert!(
            !violations(&doc, schema("position"), bad).is_empty(),
            "{bad}"
        );
    }
    let bad_others = [
        (
            "snapshot",
            json!({"type": "snapshot", "topic": t, "positions": [{"deviceId": "1", "lat": 0.5, "lon": 0.5, "ts": T0, "type": "position"}]}),
        ),
        (
            "snapshot",
            json!({"type": "snapshot", "topic": t, "positions": {}}),
        ),
        (
            "snapshot",
            json!({"type": "snapshot", "topic": t, "positions": [], "truncated": false}),
        ),
        (
            "snapshot",
            json!({"type": "snapshot", "topic": t, "positions": [{"deviceId": "1", "lat": 0.5, "lon": 0.5, "ts": T0, "trail": [[T0, 0.5]]}]}),
        ),
        (
            "snapshot",
            json!({"type": "snapshot", "topic": t, "positions": [{"deviceId": "1", "lat": 0.5, "lon": 0.5, "ts": T0, "trail": [[T0, 0.5, 0.5, 1]]}]}),
        ),
        (
            "snapshot",
            json!({"type": "snapshot", "topic": t, "positions": [{"deviceId": "1", "lat": 0.5, "lon": 0.5, "ts": T0, "trail": [[1.5, 0.5, 0.5]]}]}),
        ),
        (
            "error",
            json!({"type": "error", "code": "nope", "message": "m"}),
        ),
        ("error", json!({"type": "error", "code": "forbidden"})),
        (
            "error",
            json!({"type": "error", "code": "forbidden", "message": "m", "topic": "x".repeat(129)}),
        ),
        ("pong", json!({"type": "pong", "topic": t})),
        ("auth", json!({"type": "auth"})),
        ("auth", json!({"type": "auth", "exp": -1})),
        ("auth", json!({"type": "auth", "exp": 1.5})),
        ("auth", json!({"type": "auth", "exp": "1764327600"})),
        ("auth", json!({"type": "auth", "exp": 1, "token": "a.b.c"})),
        (
            "error",
            json!({"type": "error", "code": "unauthorized", "message": "m", "exp": 1}),
        ),
    ];
    for (kind, bad) in &bad_others {
        assert!(!violations(&doc, schema(kind), bad).is_empty(), "{bad}");
    }

    // A client `auth` core refuses, the schema refuses too.
    let client_auth = payload(&doc, messages_of(&doc, "receive")["auth"]);
    for bad in [
        json!({"type": "auth"}),
        json!({"type": "auth", "token": 42}),
        json!({"type": "auth", "token": null}),
    ] {
        assert!(!violations(&doc, client_auth, &bad).is_empty(), "{bad}");
        let refused = parse_client_message(bad.to_string().as_bytes()).map_err(|e| e.reason);
        assert_eq!(refused, Err(BadRequestReason::MissingToken), "{bad}");
    }
}
