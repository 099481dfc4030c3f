//! Messages from WebSocket clients.

use serde_json::Value;
use thiserror::Error;

use super::Topic;

/// Longest topic text echoed back in an error.
const MAX_ECHOED_TOPIC_CHARS: usize = 128;

/// A well-formed client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Subscribe(Topic, SubscribeOptions),
    Unsubscribe(Topic),
    Ping,
    /// A fresh token for the connection (contract section 5, "Token lifetime").
    Auth(String),
    /// Start (or restart) a paced replay (contract section 5.1).
    Replay(ReplayRequest),
    /// Steer a replay.
    ReplayControl(ReplayControl),
    /// `unsubscribe` of `replay:<id>`: stop that replay.
    UnsubscribeReplay(String),
}

/// Longest replay id, in characters.
pub const MAX_REPLAY_ID_CHARS: usize = 64;
/// Slowest and fastest replay speeds.
pub const MIN_REPLAY_SPEED: f64 = 0.1;
pub const MAX_REPLAY_SPEED: f64 = 1_000.0;
const REPLAY_PREFIX: &str = "replay:";

/// A `replay` message.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    pub id: String,
    pub event: uuid::Uuid,
    /// Epoch milliseconds; `from <= to`.
    pub from: i64,
    pub to: i64,
    pub speed: f64,
    /// `trail_s`: seconds of trail before each device's position in the replay's snapshots
    /// (0 = none); checked against `LIVE_TRAIL_MAX_S` by the hub, as a subscription's is.
    pub trail_s: u64,
}

/// A `replay_control` message: at least one of the three.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayControl {
    pub id: String,
    pub speed: Option<f64>,
    pub paused: Option<bool>,
    pub seek: Option<i64>,
}

impl Eq for ReplayRequest {}
impl Eq for ReplayControl {}

/// The history a `subscribe` asks for (contract section 5.1); the default is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// `trail_s`: seconds of trail before each device's snapshot position (0 = none). Its
    /// upper bound is a setting, checked by the hub.
    pub trail_s: u64,
    /// `since`: resume after this fix time, epoch milliseconds.
    pub since: Option<i64>,
}

/// What was wrong with a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BadRequestReason {
    #[error("message is not valid JSON")]
    InvalidJson,
    #[error("message must be a JSON object")]
    NotAnObject,
    #[error("message has no string field `type`")]
    MissingType,
    #[error("unknown message type")]
    UnknownType,
    #[error("message has no string field `topic`")]
    MissingTopic,
    #[error("message has no string field `token`")]
    MissingToken,
    #[error("topic must be event:<uuid>")]
    MalformedTopic,
    #[error("message is larger than the server accepts")]
    TooLarge,
    #[error("binary frames are not accepted")]
    Binary,
    #[error("`trail_s` must be a whole number of seconds, 0 or more")]
    InvalidTrail,
    #[error("`trail_s` must be at most {max}")]
    TrailTooLong { max: u64 },
    #[error("`since` must be a whole number of epoch milliseconds, 0 or more")]
    InvalidSince,
    #[error("`id` must be a string of 1 to 64 characters")]
    InvalidReplayId,
    #[error("`event` must be an event's UUID")]
    InvalidReplayEvent,
    #[error("`from` must be a whole number of epoch milliseconds, 0 or more")]
    InvalidFrom,
    #[error("`to` must be a whole number of epoch milliseconds, not before `from`")]
    InvalidTo,
    #[error("`speed` must be a number from 0.1 to 1000")]
    InvalidSpeed,
    #[error("`paused` must be true or false")]
    InvalidPaused,
    #[error("`seek` must be a whole number of epoch milliseconds, 0 or more")]
    InvalidSeek,
    #[error("`replay_control` needs `speed`, `paused` or `seek`")]
    NoControl,
    #[error("no replay with this `id` runs on this connection")]
    UnknownReplay,
}

/// A message answered with `bad_request`; `topic` is echoed when the message named one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{reason}")]
pub struct BadRequest {
    pub reason: BadRequestReason,
    pub topic: Option<String>,
}

impl BadRequest {
    pub fn new(reason: BadRequestReason) -> BadRequest {
        BadRequest {
            reason,
            topic: None,
        }
    }
}

/// Parses one text frame from a client. The caller enforces the size limit first.
pub fn parse_client_message(text: &[u8]) -> Result<ClientMessage, BadRequest> {
    let value: Value =
        serde_json::from_slice(text).map_err(|_| BadRequest::new(BadRequestReason::InvalidJson))?;
    let Value::Object(fields) = value else {
        return Err(BadRequest::new(BadRequestReason::NotAnObject));
    };
    let Some(Value::String(kind)) = fields.get("type") else {
        return Err(BadRequest {
            reason: BadRequestReason::MissingType,
            topic: echoed_topic(&fields),
        });
    };
    match kind.as_str() {
        "ping" => Ok(ClientMessage::Ping),
        "auth" => match fields.get("token") {
            Some(Value::String(token)) => Ok(ClientMessage::Auth(token.clone())),
            _ => Err(BadRequest::new(BadRequestReason::MissingToken)),
        },
        "replay" => parse_replay(&fields).map(ClientMessage::Replay),
        "replay_control" => parse_replay_control(&fields).map(ClientMessage::ReplayControl),
        "subscribe" | "unsubscribe" => {
            let Some(Value::String(raw)) = fields.get("topic") else {
                return Err(BadRequest::new(BadRequestReason::MissingTopic));
            };
            if kind == "unsubscribe" {
                if let Some(id) = raw.strip_prefix(REPLAY_PREFIX) {
                    return valid_replay_id(id)
                        .map(|id| ClientMessage::UnsubscribeReplay(id.to_owned()))
                        .ok_or(BadRequest {
                            reason: BadRequestReason::MalformedTopic,
                            topic: Some(raw.chars().take(MAX_ECHOED_TOPIC_CHARS).collect()),
                        });
                }
            }
            let topic: Topic = raw.parse().map_err(|_| BadRequest {
                reason: BadRequestReason::MalformedTopic,
                topic: Some(raw.chars().take(MAX_ECHOED_TOPIC_CHARS).collect()),
            })?;
            if kind == "unsubscribe" {
                return Ok(ClientMessage::Unsubscribe(topic));
            }
            let echo = || Some(topic.to_string());
            let trail_s = match fields.get("trail_s") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_u64().ok_or(BadRequest {
                    reason: BadRequestReason::InvalidTrail,
                    topic: echo(),
                })?,
            };
            let since = match fields.get("since") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().filter(|ms| *ms >= 0).ok_or(BadRequest {
                    reason: BadRequestReason::InvalidSince,
                    topic: echo(),
                })?),
            };
            Ok(ClientMessage::Subscribe(
                topic,
                SubscribeOptions { trail_s, since },
            ))
        }
        _ => Err(BadRequest {
            reason: BadRequestReason::UnknownType,
            topic: echoed_topic(&fields),
        }),
    }
}

/// The topic of replay `id`.
pub fn replay_topic(id: &str) -> String {
    format!("{REPLAY_PREFIX}{id}")
}

fn valid_replay_id(id: &str) -> Option<&str> {
    let n = id.chars().count();
    (1..=MAX_REPLAY_ID_CHARS).contains(&n).then_some(id)
}

type Fields = serde_json::Map<String, Value>;

/// The `id` of a replay message, or the error (without a topic: there is none yet).
fn replay_id(fields: &Fields) -> Result<String, BadRequest> {
    match fields.get("id") {
        Some(Value::String(id)) => valid_replay_id(id)
            .map(str::to_owned)
            .ok_or(BadRequest::new(BadRequestReason::InvalidReplayId)),
        _ => Err(BadRequest::new(BadRequestReason::InvalidReplayId)),
    }
}

fn bad(reason: BadRequestReason, id: &str) -> BadRequest {
    BadRequest {
        reason,
        topic: Some(replay_topic(id)),
    }
}

fn millis_field(fields: &Fields, name: &str) -> Option<Option<i64>> {
    match fields.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(v) => v.as_i64().filter(|ms| *ms >= 0).map(Some),
    }
}

fn speed_field(fields: &Fields) -> Option<Option<f64>> {
    match fields.get("speed") {
        None | Some(Value::Null) => Some(None),
        Some(v) => v
            .as_f64()
            .filter(|s| (MIN_REPLAY_SPEED..=MAX_REPLAY_SPEED).contains(s))
            .map(Some),
    }
}

fn parse_replay(fields: &Fields) -> Result<ReplayRequest, BadRequest> {
    let id = replay_id(fields)?;
    let event = match fields.get("event") {
        Some(Value::String(e)) if e.len() == 36 => uuid::Uuid::try_parse(e).ok(),
        _ => None,
    }
    .ok_or_else(|| bad(BadRequestReason::InvalidReplayEvent, &id))?;
    let from = millis_field(fields, "from")
        .flatten()
        .ok_or_else(|| bad(BadRequestReason::InvalidFrom, &id))?;
    let to = millis_field(fields, "to")
        .flatten()
        .filter(|to| *to >= from)
        .ok_or_else(|| bad(BadRequestReason::InvalidTo, &id))?;
    let speed = speed_field(fields)
        .flatten()
        .ok_or_else(|| bad(BadRequestReason::InvalidSpeed, &id))?;
    let trail_s = match fields.get("trail_s") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(BadRequestReason::InvalidTrail, &id))?,
    };
    Ok(ReplayRequest {
        id,
        event,
        from,
        to,
        speed,
        trail_s,
    })
}

fn parse_replay_control(fields: &Fields) -> Result<ReplayControl, BadRequest> {
    let id = replay_id(fields)?;
    let speed = speed_field(fields).ok_or_else(|| bad(BadRequestReason::InvalidSpeed, &id))?;
    let paused = match fields.get("paused") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad(BadRequestReason::InvalidPaused, &id)),
    };
    let seek =
        millis_field(fields, "seek").ok_or_else(|| bad(BadRequestReason::InvalidSeek, &id))?;
    if speed.is_none() && paused.is_none() && seek.is_none() {
        return Err(bad(BadRequestReason::NoControl, &id));
    }
    Ok(ReplayControl {
        id,
        speed,
        paused,
        seek,
    })
}

/// The message's `topic`, when it is a string, cut to the length echoed in errors: the
/// contract has an error carry the topic whenever the offending message named one.
fn echoed_topic(fields: &serde_json::Map<String, Value>) -> Option<String> {
    match fields.get("topic") {
        Some(Value::String(t)) => Some(t.chars().take(MAX_ECHOED_TOPIC_CHARS).collect()),
        _ => None,
    }
}
