//! Settings of the live hub.

use super::ordering::JumpRule;
use crate::faulty::FaultyThresholds;

/// Limits and thresholds of the live path. Field docs name the environment variable each
/// one comes from; the re-anchor settings have no variable in the contract and keep their
/// defaults unless the shell chooses to expose them.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    /// `LIVE_WS_MAX_MESSAGE_BYTES`: a longer client text frame gets `bad_request`.
    pub max_message_bytes: usize,
    /// `LIVE_WS_MAX_BAD_MESSAGES`: the connection is closed with 1008 at this many
    /// `bad_request`s (0 counts as 1).
    pub max_bad_messages: u32,
    /// `LIVE_WS_MAX_SUBSCRIPTIONS`: topics one connection may hold, counting those still
    /// being authorized; one more gets `limit_exceeded`.
    pub max_subscriptions: usize,
    /// `LIVE_WS_CONFLATE_THRESHOLD_BYTES`: with more bytes queued than this, position
    /// messages for the connection are conflated instead of sent.
    pub conflate_threshold_bytes: u64,
    /// `LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES`: with more bytes buffered than this (queued
    /// plus conflated), the connection is closed with 1013.
    pub backpressure_threshold_bytes: u64,
    /// `LIVE_WS_PING_INTERVAL_MS`: time between server pings; a ping not answered within
    /// two intervals closes the connection.
    pub ping_interval_ms: u64,
    /// A socket holding unwritten bytes that takes none for this long is closed with 1013:
    /// a client that stopped reading must not hold its buffers for ever.
    pub write_timeout_ms: u64,
    /// `LIVE_WS_MAX_MESSAGES_PER_S`: client messages per second, in bursts of as many; a
    /// message over the rate is not acted on, gets `limit_exceeded` and counts as a bad one.
    pub max_messages_per_s: u32,
    /// How often each subscription's event visibility is looked up again, so that an event
    /// made private (or deleted) stops reaching those it no longer allows
    /// (`LIVE_DEVICE_EVENT_REFRESH_MS`).
    pub visibility_recheck_ms: u64,
    /// How long an event's visibility, once read, answers the hub's look-ups of it
    /// (subscriptions, re-checks and replays of any connection) without asking the store;
    /// 0 (the default here; the service sets [`SERVICE_VISIBILITY_CACHE_MS`]) asks every
    /// time.
    pub visibility_cache_ms: u64,
    /// Events whose visibility the hub holds at most.
    pub visibility_cache_entries: usize,
    /// `FAULTY_MIN_SATELLITES`, `FAULTY_MAX_FUTURE_MS`: the stateless faulty rules.
    pub faulty: FaultyThresholds,
    /// `FAULTY_MAX_SPEED_KMH`: a fix implying a faster jump from the device's last accepted
    /// one is dropped (unless it re-anchors, below).
    pub max_speed_kmh: f64,
    /// A too-fast fix taken more than this long (in fix time) after the last accepted one is
    /// accepted all the same and becomes the new anchor: an anchor that old says little
    /// about where the device can be now. `u64::MAX` never re-anchors on a gap.
    pub reanchor_gap_ms: u64,
    /// After this many consecutive too-fast fixes that agree with each other (each within
    /// the speed limit of the one before it), the last of them is accepted and becomes the
    /// new anchor: it is the anchor that was wrong. 0 never re-anchors this way.
    pub reanchor_after_fixes: u32,
    /// `LIVE_TRAIL_MAX_S`: the longest `trail_s` a `subscribe` may ask for; more gets
    /// `bad_request`.
    pub trail_max_s: u64,
    /// `LIVE_TRAIL_MAX_POINTS`: points in one device's trail at most; more are thinned
    /// evenly, the oldest kept.
    pub trail_max_points: usize,
    /// `LIVE_TRAIL_MEMORY_POINTS`: recent fixes the instance keeps per device in memory
    /// ([`TrackStore`](super::TrackStore)), so that trails, resumes and snapshots of those
    /// fixes read no Postgres; 0 keeps none.
    pub trail_memory_points: usize,
    /// `LIVE_RESUME_MAX_POSITIONS`: positions a resumed snapshot (`since`) holds at most;
    /// with more, it holds the newest position per device and carries `truncated`.
    pub resume_max_positions: usize,
    /// `LIVE_REPLAY_READ_AHEAD`: positions held for one replay at most.
    pub replay_read_ahead: usize,
    /// `LIVE_REPLAY_MAX_PER_CONNECTION`: replays one connection runs at once.
    pub replay_max_per_connection: usize,
    /// `LIVE_REPLAY_MAX_TOTAL`: replays the instance runs at once. A hub made with
    /// [`LiveHub::new`](super::LiveHub::new) counts them alone; the shards of an instance
    /// share one [`ReplayBudget`](super::replay_budget::ReplayBudget) of this size.
    pub replay_max_total: usize,
}

impl LiveConfig {
    pub(crate) fn jump_rule(&self) -> JumpRule {
        JumpRule {
            max_speed_kmh: self.max_speed_kmh,
            reanchor_gap_ms: self.reanchor_gap_ms,
            reanchor_after_fixes: self.reanchor_after_fixes,
        }
    }
}

/// The visibility cache's lifetime the service runs with: many subscribers of one event ask
/// for its visibility at once (a race start, a reconnect wave), and one read answers them
/// all for a few seconds. A subscription an event no longer allows ends within
/// `LIVE_DEVICE_EVENT_REFRESH_MS` plus this (contract section 5).
pub const SERVICE_VISIBILITY_CACHE_MS: u64 = 5_000;

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            max_message_bytes: 4 * 1024,
            max_bad_messages: 10,
            max_subscriptions: 50,
            conflate_threshold_bytes: 256 * 1024,
            backpressure_threshold_bytes: 1024 * 1024,
            ping_interval_ms: 30_000,
            write_timeout_ms: 10_000,
            max_messages_per_s: 20,
            visibility_recheck_ms: 5_000,
            visibility_cache_ms: 0,
            visibility_cache_entries: 10_000,
            faulty: FaultyThresholds::default(),
            max_speed_kmh: 500.0,
            reanchor_gap_ms: 10 * 60 * 1_000,
            reanchor_after_fixes: 3,
            trail_max_s: 3_600,
            trail_max_points: 100,
            trail_memory_points: 1_000,
            resume_max_positions: 10_000,
            replay_read_ahead: 1_000,
            replay_max_per_connection: 2,
            replay_max_total: 200,
        }
    }
}
