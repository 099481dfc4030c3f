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
}

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
        "subscribe" | "unsubscribe" => {
            let Some(Value::String(raw)) = fields.get("topic") else {
                return Err(BadRequest::new(BadRequestReason::MissingTopic));
            };
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

/// The message's `topic`, when it is a string, cut to the length echoed in errors: the
/// contract has an error carry the topic whenever the offending message named one.
fn echoed_topic(fields: &serde_json::Map<String, Value>) -> Option<String> {
    match fields.get("topic") {
        Some(Value::String(t)) => Some(t.chars().take(MAX_ECHOED_TOPIC_CHARS).collect()),
        _ => None,
    }
}
