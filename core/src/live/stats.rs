//! Counters and gauges of the live path, for metrics.

/// Cumulative counts (and two gauges) of one live hub shard; the ingest counts the
/// records ([`IngestStats`](super::IngestStats)).
///
/// Every position message meant for a subscriber is a *delivery*; each delivery ends up in
/// exactly one of `fanout_messages` (sent), `conflated_messages` (replaced by a newer one of
/// the same device and topic before it went out), `dropped_messages` (not sent: covered by
/// the snapshot, or its subscription or connection ended first) or, for now, waiting (held
/// while a snapshot loads, or parked while the client catches up: `LiveHub::waiting`, which
/// walks every connection and so is not part of these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Position messages meant for a subscriber (see above).
    pub position_deliveries: u64,
    /// Position messages sent (`processor_live_broadcast_fanout_messages_total`).
    pub fanout_messages: u64,
    /// Position messages replaced by a newer one before they went out
    /// (`processor_live_conflated_messages_total`).
    pub conflated_messages: u64,
    /// Position messages never sent for another reason (see above).
    pub dropped_messages: u64,
    /// Connections closed with 1013 (`processor_live_slow_consumer_closes_total`).
    pub slow_consumer_closes: u64,
    /// Connections closed for not answering pings.
    pub ping_timeouts: u64,
    /// Connections closed because their socket took nothing within the write timeout.
    pub write_timeouts: u64,
    /// Connections closed for a WebSocket protocol violation (1002, 1007).
    pub protocol_errors: u64,
    /// Connections closed with 4001 when their token expired.
    pub token_expiries: u64,
    /// Client messages over the rate, not acted on.
    pub rate_limited: u64,
    /// Subscriptions ended with `forbidden` after a re-check (visibility or token change).
    pub revoked_subscriptions: u64,
    /// Snapshots sent.
    pub snapshots: u64,
    /// Snapshot loads and authorization lookups the shell reported failed.
    pub lookup_failures: u64,
    /// Gauge: open connections (`processor_live_connections`).
    pub connections: u64,
    /// Gauge: subscriptions that got `subscribed` (`processor_live_subscriptions`).
    pub subscriptions: u64,
}
