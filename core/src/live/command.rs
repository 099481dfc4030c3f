//! What the live hub asks the shell to do, and the ids that tie answers to requests.

use std::fmt;

use bytes::Bytes;

use crate::wire::Topic;
use crate::UnixMillis;

/// One WebSocket connection, named by the shell when it accepts it.
///
/// The shell must not reuse an id while the hub may still know it (until it has reported
/// [`handle_closed`](super::LiveHub::handle_closed) or received a [`Command::Close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One authorization lookup or snapshot load, named by the hub so that the shell's answer
/// can be matched to it. Answers to requests the hub no longer waits for are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request#{}", self.0)
    }
}

/// WebSocket close codes the hub uses (RFC 6455, section 7.4.1).
pub mod close_code {
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Too many `bad_request`s, or no pong within two ping intervals.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A client message over the 64 KiB hard limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Slow consumer: the outbound buffer passed the back-pressure threshold.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Reasons sent in close frames; all well under the 123 bytes a close frame can carry.
pub mod close_reason {
    pub const SHUTDOWN: &str = "server shutting down";
    pub const TOO_MANY_BAD_REQUESTS: &str = "too many bad requests";
    pub const PING_TIMEOUT: &str = "no pong within two ping intervals";
    pub const MESSAGE_TOO_BIG: &str = "message too big";
    pub const SLOW_CONSUMER: &str = "slow consumer";
}

/// A command for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Write this text frame to the connection. `bytes` of a position message are shared by
    /// every recipient (cloning `Bytes` only bumps a reference count). Report what the
    /// socket actually wrote with [`handle_drained`](super::LiveHub::handle_drained).
    Send {
        conn: ConnId,
        bytes: Bytes,
        /// The fix time, for position messages only: the shell observes the fix-to-send lag
        /// (`processor_live_broadcast_lag_ms`) when it writes the frame.
        fix_ts: Option<UnixMillis>,
    },
    /// Send a close frame with this code and reason, then drop the connection. The hub has
    /// already forgotten the connection: it sends nothing more to it and ignores any later
    /// input about it.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// Look up the visibility of `topic.event_id()` (a short cache is fine) and answer with
    /// [`handle_authorization`](super::LiveHub::handle_authorization) or
    /// [`handle_authorization_failed`](super::LiveHub::handle_authorization_failed). The
    /// decision itself is the hub's.
    Authorize {
        request: RequestId,
        conn: ConnId,
        topic: Topic,
    },
    /// Load the newest non-faulty stored position of each of `devices` (sorted, the devices
    /// of the event when the subscription was granted) and answer with
    /// [`handle_snapshot`](super::LiveHub::handle_snapshot) or
    /// [`handle_snapshot_failed`](super::LiveHub::handle_snapshot_failed).
    LoadSnapshot {
        request: RequestId,
        conn: ConnId,
        topic: Topic,
        devices: Vec<String>,
    },
    /// Send a WebSocket ping frame; the client's pong comes back as
    /// [`handle_pong`](super::LiveHub::handle_pong).
    Ping { conn: ConnId },
}
