//! What reaches the hub task, and what it sends to connection tasks.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use processor_core::live::{ConnId, Principal, RequestId, Visibility};
use processor_core::stream::EntryId;
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

/// An input for the hub task.
pub enum HubInput {
    Connected {
        conn: ConnId,
        principal: Principal,
        outbound: mpsc::UnboundedSender<Outbound>,
    },
    Text {
        conn: ConnId,
        text: Bytes,
    },
    Binary {
        conn: ConnId,
    },
    TooLarge {
        conn: ConnId,
    },
    Pong {
        conn: ConnId,
    },
    Drained {
        conn: ConnId,
        bytes: u64,
    },
    Closed {
        conn: ConnId,
    },
    Positions(Vec<(EntryId, Option<Bytes>)>),
    DeviceMap {
        version: u64,
        map: BTreeMap<String, BTreeSet<Uuid>>,
    },
    Authorized {
        request: RequestId,
        visibility: Result<Visibility, String>,
    },
    Snapshot {
        request: RequestId,
        positions: Result<Vec<WirePosition>, String>,
    },
}

/// What a connection's writer task is asked to do.
pub enum Outbound {
    /// A text frame; `fix_ts` for position messages, to observe the fix-to-send lag.
    Text {
        bytes: Bytes,
        fix_ts: Option<UnixMillis>,
    },
    Ping,
    /// Send a close frame and end the connection.
    Close {
        code: u16,
        reason: &'static str,
    },
}
