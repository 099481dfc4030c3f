//! What the live hub asks the shell to do, and the ids that tie answers to requests.

use std::fmt;

use super::history::HistoryQuery;
use super::replay::ReplayKey;
use crate::websocket::Frame;
use crate::wire::Topic;
use crate::UnixMillis;

/// One WebSocket connection, named by the shell when it accepts it.
///
/// The shell must not reuse an id while the hub may still know it (until it has reported
/// [`Input::Closed`](super::Input::Closed) or received a [`Command::Close`]).
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
    /// The client closed the connection and is answered in kind.
    pub const NORMAL: u16 = 1000;
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Too many bad messages (`bad_request`s and messages over the rate), or no pong
    /// within two ping intervals.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A framing error: unmasked client frame, reserved bits or opcodes, bad control frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A client message over the 64 KiB hard limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Slow consumer: the outbound buffer passed the back-pressure threshold.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The token's `exp` passed (contract section 5, "Token lifetime").
    pub const TOKEN_EXPIRED: u16 = 4001;
}

/// Reasons sent in close frames; all well under the 123 bytes a close frame can carry.
pub mod close_reason {
    pub const SHUTDOWN: &str = "server shutting down";
    pub const TOO_MANY_BAD_REQUESTS: &str = "too many bad requests";
    pub const PING_TIMEOUT: &str = "no pong within two ping intervals";
    pub const MESSAGE_TOO_BIG: &str = "message too big";
    pub const SLOW_CONSUMER: &str = "slow consumer";
    pub const WRITE_TIMEOUT: &str = "took no bytes within the write timeout";
    pub const NORMAL: &str = "";
    pub const TOKEN_EXPIRED: &str = "token expired";
}

/// A command for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Write this finished frame to the connection. A position's frame is shared by every
    /// recipient (cloning only bumps a reference count). Report what the socket took with
    /// [`Input::Written`](super::Input::Written) after each write attempt.
    Send { conn: ConnId, frame: Frame },
    /// Send a close frame with this code and reason after what is already queued, then drop
    /// the connection. The hub has already forgotten the connection: it sends nothing more
    /// to it and ignores any later input about it.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// Look up the visibility of `topic.event_id()` in the store and answer with
    /// [`Input::Visibility`](super::Input::Visibility). The hub asks only when its own
    /// cache of recent answers has none; the decision is the hub's.
    Authorize {
        request: RequestId,
        conn: ConnId,
        topic: Topic,
    },
    /// Verify `token` (sent in an `auth` message) as the upgrade's token is verified, and
    /// answer with [`Input::TokenVerified`](super::Input::TokenVerified). What it grants is
    /// decided here.
    VerifyToken { conn: ConnId, token: String },
    /// Load the newest non-faulty stored position of each of `devices` (sorted, the devices
    /// of the event when the subscription was granted), and the stored history `history`
    /// asks for, and answer with [`Input::Snapshot`](super::Input::Snapshot).
    LoadSnapshot {
        request: RequestId,
        conn: ConnId,
        topic: Topic,
        devices: Vec<String>,
        history: HistoryQuery,
    },
    /// Load the newest non-faulty stored position at or before `at` of each of `devices`,
    /// and for a trail the rows [`HistoryQuery::Trail`] names before each of those, and
    /// answer with [`Input::ReplaySnapshot`](super::Input::ReplaySnapshot).
    LoadReplaySnapshot {
        request: RequestId,
        conn: ConnId,
        devices: Vec<String>,
        at: UnixMillis,
        /// [`HistoryQuery::Latest`](super::HistoryQuery::Latest), or a trail whose window
        /// ends at each device's newest fix at or before `at`.
        history: HistoryQuery,
    },
    /// Load at most `limit` non-faulty stored positions of `devices` with a replay key
    /// (ts, device) after `after` and `ts <= to`, in key order, and answer with
    /// [`Input::ReplayPage`](super::Input::ReplayPage). Fewer than `limit` means no more.
    LoadReplayPage {
        request: RequestId,
        conn: ConnId,
        devices: Vec<String>,
        after: ReplayKey,
        to: UnixMillis,
        limit: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_with_what_they_name() {
        assert_eq!(ConnId(3).to_string(), "conn#3");
        assert_eq!(RequestId(4).to_string(), "request#4");
    }
}
