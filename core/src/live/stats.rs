//! Counters and gauges of the live path, for metrics.

/// Cumulative counts (and three gauges) of the live hub.
///
/// Every position message meant for a subscriber is a *delivery*; each delivery ends up in
/// exactly one of `fanout_messages` (sent), `conflated_messages` (replaced by a newer one of
/// the same device and topic before it went out), `dropped_messages` (not sent: covered by
/// the snapshot, or its subscription or connection ended first) or, for now, `waiting`
/// (held while a snapshot loads, or parked while the client catches up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Stream entries handed to the hub (`processor_live_broadcast_records_total`).
    pub broadcast_records: u64,
    /// Entries without a decodable payload (`processor_live_broadcast_decode_errors_total`).
    pub decode_errors: u64,
    /// Decoded records of devices in no event
    /// (`processor_live_broadcast_orphan_records_total`).
    pub orphan_records: u64,
    /// Records dropped by the stateless faulty rules.
    pub faulty_dropped: u64,
    /// Records not newer than their device's last accepted fix.
    pub stale_dropped: u64,
    /// Records implying a jump faster than the speed limit.
    pub jump_dropped: u64,
    /// Too-fast records accepted as a device's new anchor (counted in `accepted` too).
    pub reanchored: u64,
    /// Records that passed every rule (and moved their device's anchor).
    pub accepted: u64,
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
    /// Snapshots sent.
    pub snapshots: u64,
    /// Snapshot loads and authorization lookups the shell reported failed.
    pub lookup_failures: u64,
    /// Gauge: open connections (`processor_live_connections`).
    pub connections: u64,
    /// Gauge: subscriptions that got `subscribed` (`processor_live_subscriptions`).
    pub subscriptions: u64,
    /// Gauge: position messages held or parked.
    pub waiting: u64,
}
