//! Everything the live hub is told: one input type, handled by [`LiveHub::handle`].
//!
//! [`LiveHub::handle`]: super::LiveHub::handle

use std::sync::Arc;

use bytes::Bytes;

use super::auth::{Principal, Visibility};
use super::command::{ConnId, RequestId};
use super::device_map::DeviceMap;
use super::ingest::FanoutBatch;
use crate::websocket::{ClientFrame, FrameError};
use crate::wire::WirePosition;
use crate::UnixMillis;

/// A look-up the shell could not answer (Postgres away, a timeout). Its text is for the
/// shell's log; the hub's answer to the client is the same whatever it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFailed(pub String);

/// What a verified token grants, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub principal: Principal,
    pub expires_at: UnixMillis,
}

/// Why a token sent in an `auth` message was refused; the text goes to the client, so it
/// must never contain the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefused(pub String);

/// An input for [`LiveHub::handle`](super::LiveHub::handle).
#[derive(Debug, Clone)]
pub enum Input {
    /// A client completed the WebSocket upgrade with this principal (the shell has already
    /// checked its token); `expires_at` is the token's `exp` (none for an anonymous
    /// client): the connection is closed with 4001 when it passes.
    Connected {
        conn: ConnId,
        principal: Principal,
        expires_at: Option<UnixMillis>,
    },
    /// What the client's bytes made: a message, a control frame, or the protocol violation
    /// that ends the connection.
    Frame {
        conn: ConnId,
        frame: Result<ClientFrame, FrameError>,
    },
    /// A write attempt on the socket took `bytes` of what was sent to `conn` (0 when the
    /// socket took nothing). Reported after every attempt, so that the hub knows when a
    /// socket is stalled.
    Written { conn: ConnId, bytes: u64 },
    /// The connection is gone (the client left, a read or write failed). Nothing is sent.
    Closed { conn: ConnId },
    /// The answer to a [`Command::Authorize`](super::Command::Authorize).
    Visibility {
        request: RequestId,
        visibility: Result<Visibility, LookupFailed>,
    },
    /// The answer to a [`Command::LoadSnapshot`](super::Command::LoadSnapshot): the stored
    /// rows found (any order, any number per device).
    Snapshot {
        request: RequestId,
        rows: Result<Vec<WirePosition>, LookupFailed>,
    },
    /// The answer to a [`Command::LoadReplaySnapshot`](super::Command::LoadReplaySnapshot).
    ReplaySnapshot {
        request: RequestId,
        rows: Result<Vec<WirePosition>, LookupFailed>,
    },
    /// The answer to a [`Command::LoadReplayPage`](super::Command::LoadReplayPage).
    ReplayPage {
        request: RequestId,
        rows: Result<Vec<WirePosition>, LookupFailed>,
    },
    /// The answer to a [`Command::VerifyToken`](super::Command::VerifyToken).
    TokenVerified {
        conn: ConnId,
        result: Result<Grant, TokenRefused>,
    },
    /// Positions the ingest accepted from one stream read, shared by every hub shard.
    Batch(Arc<FanoutBatch>),
    /// A new device-to-event map, shared by the ingest and every shard.
    DeviceMap(Arc<DeviceMap>),
    /// Time passed (deadlines from [`poll_timeout`](super::LiveHub::poll_timeout)); a
    /// spurious one does nothing.
    Timeout,
    /// Close every connection with 1001; connections arriving later are closed at once.
    Shutdown,
}

/// The bytes of a client text message, as a `Frame` input (tests and the simulation).
pub fn text(conn: ConnId, text: impl Into<Bytes>) -> Input {
    Input::Frame {
        conn,
        frame: Ok(ClientFrame::Text(text.into())),
    }
}
