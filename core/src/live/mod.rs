//! The live fan-out state machine (contract sections 4, 5 and 6).
//!
//! [`LiveHub`] takes what this instance's broadcast group read from the stream, the
//! device-to-event map, and what its WebSocket clients did, and tells the shell what to
//! send to whom. It is pure: time is an input, every collection whose order reaches a
//! command is ordered, and the same inputs give the same commands.
//!
//! Three machines, each fed through one input type:
//! - [`Ingest`] takes what this instance's broadcast group read ([`IngestInput`]) and
//!   judges it once: decode, faulty rules, per-device order and jump rules, one finished
//!   frame per (position, topic). Its [`FanoutBatch`]es go to every shard.
//! - [`LiveHub`] is one shard: the connections given to it and every batch, fed with
//!   [`LiveHub::handle`]`(now, `[`Input`]`)`; it emits [`Command`]s (`Send`, `Close`,
//!   `Authorize`, `LoadSnapshot`, `VerifyToken`) and a deadline
//!   ([`LiveHub::poll_timeout`]). A client's view is the same whatever its shard: every
//!   shard sees the same batches in the same order, and a connection's inputs all go to
//!   its own shard.
//! - [`TrackStore`] keeps the recent fixes the ingest saw per device ([`TrackInput`]) and
//!   answers snapshots' history for the devices it holds completely.
//!
//! Beside them, [`client_view`] is no part of the hub: the contract's per-client guarantees
//! as a checker of the frames one client reads, shared by the core's property tests and
//! the simulation so that both judge the hub by one rule book.
//!
//! Rules, with the choices made where the contract is silent:
//! - **Filtering.** A record is counted, decoded (decode errors are counted; logging them
//!   and dead-lettering is the durable path's job, which sees the same entries), counted as
//!   orphan when its device is in no event (and then forgotten: orphans are never
//!   broadcast, so live memory is bounded by the device map), then dropped when faulty,
//!   when not newer than the device's last accepted fix, or when implying a jump over
//!   `FAULTY_MAX_SPEED_KMH`. The last two apply whether or not anyone is subscribed. A device is never locked out
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
//! - **History** (contract section 5.1, `history.rs`). `trail_s` and `since` become a
//!   [`HistoryQuery`] the shell answers from the instance's [`TrackStore`] (recent fixes
//!   the ingest saw, for the devices it holds completely) and Postgres (the others); the
//!   core merges the rows with each device's recent live fixes (`recent.rs`: what Postgres
//!   may not have stored yet), runs
//!   the per-device rules over them, thins trails, and decides `truncated`. While such a
//!   snapshot loads, every arriving position is held (up to `resume_max_positions`), not
//!   only the newest, so that the track has no hole; the floors keep anything at or before
//!   what the snapshot sent (or before `since`) from following it.
//! - **Replay** (contract section 5.1, `replay.rs`). `replay` is authorized as a
//!   subscription to its event; then `subscribed`, a snapshot at `from`
//!   ([`Command::LoadReplaySnapshot`]) and positions read ahead in pages
//!   ([`Command::LoadReplayPage`], at most `replay_read_ahead` held), each sent when the
//!   replay's clock reaches it, then `replay_end` when the clock reaches `to`. Replay
//!   positions are never parked or conflated: while the connection's queue is over the
//!   conflate threshold the replay's clock stops instead. `replay_control` pauses, changes
//!   the speed, or seeks (a new snapshot; answers to loads for the old time are ignored).
//!   At most `replay_max_per_connection` replays per connection and `replay_max_total` per
//!   instance (a [`replay_budget::ReplayBudget`] the shards share); more get
//!   `limit_exceeded`. A running replay is not re-checked against its
//!   event's visibility: it shows stored history the client was allowed when it started.
//! - **Slow clients.** See `outbound.rs`: with more than the conflate threshold queued,
//!   positions are parked, newest per (topic, device); with more than the back-pressure
//!   threshold buffered (queued plus parked) the connection is closed with 1013. Control
//!   messages are never parked. One snapshot at a time is exempt from the back-pressure
//!   threshold while it drains (trails and resumes make large ones; see `outbound.rs`).
//! - **Keep-alive.** A ping every `ping_interval_ms` per connection (one sorted timer for
//!   all); a ping unanswered for two intervals closes the connection with 1008 (policy
//!   violation: the client broke the keep-alive rule; 1001 is kept for shutdown so that
//!   clients can tell the two apart). A socket that holds unwritten bytes and takes none
//!   for `write_timeout_ms` is closed with 1013: deadlines are connection state, checked by
//!   the one timer, never a timer per write.
//! - **Protocol.** Client frames are read by [`crate::websocket::FrameReader`]; a violation
//!   closes the connection with its RFC 6455 code (1002, 1007, 1009), a client's close
//!   frame is answered with 1000.
//! - **Limits.** Over `max_message_bytes`, invalid JSON, unknown type, malformed topic,
//!   binary: `bad_request`, connection usable; the `max_bad_messages`-th is answered, then
//!   the connection is closed with 1008. A message over 64 KiB: 1009. A topic beyond
//!   `max_subscriptions` (counting those being authorized): `limit_exceeded`.
//! - **Token lifetime.** A token's `exp` is a deadline of its connection: when it passes,
//!   the connection is closed with 4001. An `auth` message is verified by the shell
//!   ([`Command::VerifyToken`]); a valid token replaces the claims and the deadline, is
//!   answered `{"type":"auth","exp":...}`, and every subscription is checked again.
//! - **Re-checks.** Every `visibility_recheck_ms` each subscription's event visibility is
//!   looked up again (the shell's short cache answers most), and after an `auth` at once;
//!   one no longer allowed ends with `forbidden` and nothing more of its topic.
//! - **Rate.** A connection sends at most `max_messages_per_s` messages per second (bursts
//!   of as many); one over the rate is not acted on, gets `limit_exceeded` and counts as a
//!   bad message; a WebSocket ping over the rate is not answered.
//! - **Closing.** After a `Close`, the hub forgets the connection: nothing more is sent and
//!   later input about it is ignored. Shutdown closes every connection with 1001.

mod auth;
pub mod claims;
pub mod client_view;
mod command;
mod config;
mod device_map;
pub mod group_sweep;
mod held;
mod history;
mod ingest;
mod input;
mod machine;
mod ordering;
mod outbound;
mod rate;
mod recent;
mod registry;
mod replay;
pub mod replay_budget;
mod stats;
mod timers;
mod track_store;

pub use auth::{Principal, Visibility, ADMIN_ROLE};
pub use command::{close_code, close_reason, Command, ConnId, RequestId};
pub use config::{LiveConfig, SERVICE_VISIBILITY_CACHE_MS};
pub use device_map::DeviceMap;
pub use history::{thin, HistoryQuery};
pub use ingest::{FanoutBatch, Ingest, IngestInput, IngestStats};
pub use input::{text, Grant, Input, LookupFailed, TokenRefused};
pub use machine::{
    LiveHub, AUTHORIZATION_FAILED_MESSAGE, FORBIDDEN_MESSAGE, SNAPSHOT_FAILED_MESSAGE,
    UNAVAILABLE_CODE,
};
pub use replay::ReplayKey;
pub use stats::LiveStats;
pub use track_store::{HeldRows, TrackInput, TrackStore};
