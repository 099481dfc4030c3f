//! The live fan-out state machine (contract sections 4, 5 and 6).
//!
//! [`LiveHub`] takes what this instance's broadcast group read from the stream, the
//! device-to-event map, and what its WebSocket clients did, and tells the shell what to
//! send to whom. It is pure: time is an input, every collection whose order reaches a
//! command is ordered, and the same inputs give the same commands.
//!
//! The shell feeds it:
//! - connections: [`handle_connected`](LiveHub::handle_connected) (with the token's
//!   [`Principal`]), [`handle_client_text`](LiveHub::handle_client_text),
//!   [`handle_client_binary`](LiveHub::handle_client_binary),
//!   [`handle_client_too_large`](LiveHub::handle_client_too_large),
//!   [`handle_pong`](LiveHub::handle_pong), [`handle_drained`](LiveHub::handle_drained),
//!   [`handle_closed`](LiveHub::handle_closed);
//! - answers: [`handle_authorization`](LiveHub::handle_authorization) (the event's
//!   [`Visibility`]), [`handle_snapshot`](LiveHub::handle_snapshot) and their `_failed`
//!   twins;
//! - the stream and the map: [`handle_positions`](LiveHub::handle_positions),
//!   [`handle_device_map`](LiveHub::handle_device_map);
//! - time: [`handle_timeout`](LiveHub::handle_timeout), [`handle_shutdown`](LiveHub::handle_shutdown);
//!
//! and executes the [`Command`]s it emits: `Send`, `Close`, `Authorize`, `LoadSnapshot`,
//! `Ping`.
//!
//! Rules, with the choices made where the contract is silent:
//! - **Filtering.** A record is counted, decoded (decode errors are counted; logging them
//!   and dead-lettering is the durable path's job, which sees the same entries), counted as
//!   orphan when its device is in no event, then dropped when faulty, when not newer than
//!   the device's last accepted fix, or when implying a jump over `FAULTY_MAX_SPEED_KMH`.
//!   The last two apply whether or not anyone is subscribed. A device is never locked out
//!   by the jump rule: see `ordering.rs` for the two re-anchor rules (a gap of more than
//!   `reanchor_gap_ms` in fix time, or `reanchor_after_fixes` agreeing too-fast fixes).
//! - **Fan-out.** An accepted position goes to the subscribers of every event its device
//!   belongs to, encoded once per topic.
//! - **Authorization.** Decided here ([`Principal::may_subscribe`]): public, or the token
//!   names the event (UUIDs compared parsed, so case-insensitively), or it is an admin's.
//!   An unknown event is forbidden to everyone, with the very message a private one gets.
//! - **Snapshot.** `subscribed`, then `LoadSnapshot`; positions for the topic are held
//!   (newest per device) until the snapshot is merged with the live path's last accepted
//!   fixes and sent; held positions newer than the snapshot follow, then live ones. A
//!   position at or before the snapshot's fix time of its device is never sent after it.
//!   A failed load is answered with an error ([`UNAVAILABLE_CODE`]) and `unsubscribed`.
//!   Subscribing again to a subscribed topic starts over with a fresh snapshot.
//! - **Slow clients.** See `outbound.rs`: with more than the conflate threshold queued,
//!   positions are parked, newest per (topic, device); with more than the back-pressure
//!   threshold buffered (queued plus parked) the connection is closed with 1013. Control
//!   messages are never parked. A snapshot larger than the back-pressure threshold closes
//!   its connection: the threshold must exceed the largest event's snapshot.
//! - **Keep-alive.** A ping every `ping_interval_ms` per connection (one sorted timer for
//!   all); a ping unanswered for two intervals closes the connection with 1008 (policy
//!   violation: the client broke the keep-alive rule; 1001 is kept for shutdown so that
//!   clients can tell the two apart).
//! - **Limits.** Over `max_message_bytes`, invalid JSON, unknown type, malformed topic,
//!   binary: `bad_request`, connection usable; the `max_bad_messages`-th is answered, then
//!   the connection is closed with 1008. A message over 64 KiB: 1009. A topic beyond
//!   `max_subscriptions` (counting those being authorized): `limit_exceeded`.
//! - **Closing.** After a `Close`, the hub forgets the connection: nothing more is sent and
//!   later input about it is ignored. Shutdown closes every connection with 1001.

mod auth;
mod command;
mod config;
mod device_map;
mod machine;
mod ordering;
mod outbound;
mod registry;
mod stats;
mod timers;

pub use auth::{Principal, Visibility, ADMIN_ROLE};
pub use command::{close_code, close_reason, Command, ConnId, RequestId};
pub use config::LiveConfig;
pub use machine::{
    LiveHub, AUTHORIZATION_FAILED_MESSAGE, FORBIDDEN_MESSAGE, SNAPSHOT_FAILED_MESSAGE,
    UNAVAILABLE_CODE,
};
pub use stats::LiveStats;
