//! Messages to WebSocket clients.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Topic;
use crate::websocket::Frame;
use crate::Position;

/// A position as it travels to clients: in a `position` message (with `type` and `topic`)
/// and in a snapshot's `positions` array (without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePosition {
    #[serde(rename = "deviceId")]
    pub device_id: String,
    pub lat: f64,
    pub lon: f64,
    /// Fix time, epoch milliseconds.
    pub ts: i64,
    /// km/h; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub speed: f64,
    /// Degrees; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub course: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl From<&Position> for WirePosition {
    fn from(p: &Position) -> Self {
        WirePosition {
            device_id: p.device_id.clone(),
            lat: p.latitude,
            lon: p.longitude,
            ts: p.ts.as_i64(),
            speed: p.speed,
            course: p.angle,
        }
    }
}

/// One point of a trail: `[ts, lat, lon]`.
pub type TrailPoint = (i64, f64, f64);

/// A position in a snapshot: a [`WirePosition`], with its device's trail when the
/// subscription asked for one (contract section 5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPosition {
    #[serde(flatten)]
    pub position: WirePosition,
    /// Oldest first; present (maybe empty) exactly when the subscription asked for a trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail: Option<Vec<TrailPoint>>,
}

impl From<WirePosition> for SnapshotPosition {
    fn from(position: WirePosition) -> Self {
        SnapshotPosition {
            position,
            trail: None,
        }
    }
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// The `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Forbidden,
    BadRequest,
    LimitExceeded,
    Unauthorized,
}

/// Every message the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    Subscribed {
        topic: String,
    },
    Snapshot {
        topic: String,
        positions: Vec<SnapshotPosition>,
        /// A resume (`since`) with more positions than the server sends: the snapshot holds
        /// the newest position per device instead.
        #[serde(default, skip_serializing_if = "is_false")]
        truncated: bool,
    },
    Position {
        topic: String,
        #[serde(flatten)]
        position: WirePosition,
    },
    Unsubscribed {
        topic: String,
    },
    Pong,
    /// A replay reached its `to`: nothing more of its topic follows.
    #[serde(rename = "replay_end")]
    ReplayEnd {
        topic: String,
    },
    /// A fresh token was accepted; `exp` is its expiry, epoch seconds.
    Auth {
        exp: u64,
    },
    Error {
        code: ErrorCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        message: String,
    },
}

/// The JSON text of `message`, ready to be shared by every recipient.
pub fn encode(message: &ServerMessage) -> Bytes {
    // Serialising these types cannot fail: every map key is a string and every float a
    // decoded, finite number.
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}

/// The `position` message for `topic`, encoded once for all of the topic's subscribers.
pub fn position_message(topic: &Topic, position: &Position) -> Bytes {
    encode(&ServerMessage::Position {
        topic: topic.to_string(),
        position: WirePosition::from(position),
    })
}

/// `message` as a finished text frame, ready to be written to any client's socket.
pub fn frame(message: &ServerMessage) -> Frame {
    // As in `encode`: serialising these types cannot fail.
    Frame::text_with(|buf| {
        let _ = serde_json::to_writer(buf, message);
    })
}

/// The `position` message for `topic` as a finished frame, built once for all of the
/// topic's subscribers.
pub fn position_frame(topic: &Topic, position: &Position) -> Frame {
    frame(&ServerMessage::Position {
        topic: topic.to_string(),
        position: WirePosition::from(position),
    })
}
