//! The Prometheus metrics of contract section 7, all registered (at zero) from start-up.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use processor_core::durable::DurableStats;

/// Every metric the processor exposes.
pub struct Metrics {
    registry: Registry,
    pub durable_records: Counter,
    pub durable_decode_errors: Counter,
    pub durable_rows_written: Counter,
    pub durable_write_seconds: Histogram,
    pub durable_dead_lettered: Counter,
    pub durable_rejected_rows: Counter,
    pub durable_write_retries: Counter,
    pub durable_pending: Gauge,
    pub live_broadcast_records: Counter,
    pub live_broadcast_decode_errors: Counter,
    pub live_broadcast_orphan_records: Counter,
    pub live_broadcast_fanout_messages: Counter,
    pub live_broadcast_lag_ms: Histogram,
    pub live_connections: Gauge,
    pub live_subscriptions: Gauge,
    pub live_conflated_messages: Counter,
    pub live_slow_consumer_closes: Counter,
    pub live_accept_errors: Counter,
    pub live_position_deliveries: Counter,
    pub live_dropped_messages: Counter,
    pub live_ping_timeout_closes: Counter,
    pub live_protocol_error_closes: Counter,
    pub live_token_expiry_closes: Counter,
    pub live_rate_limited_messages: Counter,
    pub live_revoked_subscriptions: Counter,
    pub live_snapshots: Counter,
    pub live_lookup_failures: Counter,
    /// Devices of snapshots answered from the instance's recent tracks, and from Postgres.
    pub live_snapshot_memory_devices: Counter,
    pub live_snapshot_postgres_devices: Counter,
    /// Fixes held in the recent tracks.
    pub live_track_points: Gauge,
    pub stream_trimmed_entries: Counter,
    pub stream_trim_passes: Counter,
}

impl Metrics {
    pub fn new(instance_id: &str) -> Metrics {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("instance_id"),
                std::borrow::Cow::Owned(instance_id.to_owned()),
            )]
            .into_iter(),
        );
        let m = Metrics {
            durable_records: Counter::default(),
            durable_decode_errors: Counter::default(),
            durable_rows_written: Counter::default(),
            // 1 ms to ~16 s.
            durable_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            durable_dead_lettered: Counter::default(),
            durable_rejected_rows: Counter::default(),
            durable_write_retries: Counter::default(),
            durable_pending: Gauge::default(),
            live_broadcast_records: Counter::default(),
            live_broadcast_decode_errors: Counter::default(),
            live_broadcast_orphan_records: Counter::default(),
            live_broadcast_fanout_messages: Counter::default(),
            // 1 ms to ~65 s.
            live_broadcast_lag_ms: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            live_connections: Gauge::default(),
            live_subscriptions: Gauge::default(),
            live_conflated_messages: Counter::default(),
            live_slow_consumer_closes: Counter::default(),
            live_accept_errors: Counter::default(),
            live_position_deliveries: Counter::default(),
            live_dropped_messages: Counter::default(),
            live_ping_timeout_closes: Counter::default(),
            live_protocol_error_closes: Counter::default(),
            live_token_expiry_closes: Counter::default(),
            live_rate_limited_messages: Counter::default(),
            live_revoked_subscriptions: Counter::default(),
            live_snapshots: Counter::default(),
            live_lookup_failures: Counter::default(),
            live_snapshot_memory_devices: Counter::default(),
            live_snapshot_postgres_devices: Counter::default(),
            live_track_points: Gauge::default(),
            stream_trimmed_entries: Counter::default(),
            stream_trim_passes: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "processor_durable_records",
            "Stream entries taken in by the durable consumer",
            m.durable_records.clone(),
        );
        r.register(
            "processor_durable_decode_errors",
            "Entries whose payload could not be decoded",
            m.durable_decode_errors.clone(),
        );
        r.register(
            "processor_durable_rows_written",
            "Rows newly inserted into positions",
            m.durable_rows_written.clone(),
        );
        r.register(
            "processor_durable_write_seconds",
            "Duration of one batched insert, commit included",
            m.durable_write_seconds.clone(),
        );
        r.register(
            "processor_durable_dead_lettered",
            "Entries copied to the dead-letter stream",
            m.durable_dead_lettered.clone(),
        );
        r.register(
            "processor_durable_rejected_rows",
            "Single rows Postgres rejected for their data",
            m.durable_rejected_rows.clone(),
        );
        r.register(
            "processor_durable_write_retries",
            "Inserts retried after a transient failure",
            m.durable_write_retries.clone(),
        );
        r.register(
            "processor_durable_pending",
            "Entries pending in the durable consumer group",
            m.durable_pending.clone(),
        );
        r.register(
            "processor_live_broadcast_records",
            "Stream entries read by the broadcast consumer",
            m.live_broadcast_records.clone(),
        );
        r.register(
            "processor_live_broadcast_decode_errors",
            "Broadcast entries whose payload could not be decoded",
            m.live_broadcast_decode_errors.clone(),
        );
        r.register(
            "processor_live_broadcast_orphan_records",
            "Positions of devices in no event",
            m.live_broadcast_orphan_records.clone(),
        );
        r.register(
            "processor_live_broadcast_fanout_messages",
            "Position messages queued to clients",
            m.live_broadcast_fanout_messages.clone(),
        );
        r.register(
            "processor_live_broadcast_lag_ms",
            "Fix time to send, in milliseconds",
            m.live_broadcast_lag_ms.clone(),
        );
        r.register(
            "processor_stream_trimmed_entries",
            "Entries removed from the telemetry stream by the trimmer",
            m.stream_trimmed_entries.clone(),
        );
        r.register(
            "processor_stream_trim_passes",
            "Times the trimmer looked at the consumer groups",
            m.stream_trim_passes.clone(),
        );
        r.register(
            "processor_live_connections",
            "Open WebSocket connections",
            m.live_connections.clone(),
        );
        r.register(
            "processor_live_subscriptions",
            "Topic subscriptions across connections",
            m.live_subscriptions.clone(),
        );
        r.register(
            "processor_live_conflated_messages",
            "Position messages replaced by a newer one for a slow client",
            m.live_conflated_messages.clone(),
        );
        r.register(
            "processor_live_slow_consumer_closes",
            "Connections closed with 1013 for a full outbound buffer",
            m.live_slow_consumer_closes.clone(),
        );
        r.register(
            "processor_live_position_deliveries",
            "Position messages meant for a subscriber: sent, conflated, dropped or still waiting",
            m.live_position_deliveries.clone(),
        );
        r.register(
            "processor_live_dropped_messages",
            "Position messages not sent: covered by the snapshot, or their subscription or connection ended first",
            m.live_dropped_messages.clone(),
        );
        r.register(
            "processor_live_ping_timeout_closes",
            "Connections closed for not answering pings",
            m.live_ping_timeout_closes.clone(),
        );
        r.register(
            "processor_live_protocol_error_closes",
            "Connections closed for a WebSocket protocol violation (1002, 1007)",
            m.live_protocol_error_closes.clone(),
        );
        r.register(
            "processor_live_token_expiry_closes",
            "Connections closed with 4001 when their token expired",
            m.live_token_expiry_closes.clone(),
        );
        r.register(
            "processor_live_rate_limited_messages",
            "Client messages over LIVE_WS_MAX_MESSAGES_PER_S, not acted on",
            m.live_rate_limited_messages.clone(),
        );
        r.register(
            "processor_live_revoked_subscriptions",
            "Subscriptions ended with forbidden after a re-check (visibility or token change)",
            m.live_revoked_subscriptions.clone(),
        );
        r.register(
            "processor_live_snapshots",
            "Snapshots sent",
            m.live_snapshots.clone(),
        );
        r.register(
            "processor_live_lookup_failures",
            "Visibility look-ups and snapshot loads that failed (Postgres away)",
            m.live_lookup_failures.clone(),
        );
        r.register(
            "processor_live_accept_errors",
            "Failed accepts on LIVE_WS_ADDR or METRICS_ADDR (out of file descriptors or memory)",
            m.live_accept_errors.clone(),
        );
        r.register(
            "processor_live_snapshot_memory_devices",
            "Devices of snapshots answered from the instance's recent tracks (LIVE_TRAIL_MEMORY_POINTS)",
            m.live_snapshot_memory_devices.clone(),
        );
        r.register(
            "processor_live_snapshot_postgres_devices",
            "Devices of snapshots read from Postgres (not seen since start, or history older than memory holds)",
            m.live_snapshot_postgres_devices.clone(),
        );
        r.register(
            "processor_live_track_points",
            "Recent fixes held in memory for snapshots, over all devices",
            m.live_track_points.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Moves the durable counters forward by what changed since `previous`.
    pub fn record_durable(&self, previous: &DurableStats, now: &DurableStats) {
        self.durable_records.inc_by(now.records - previous.records);
        self.durable_decode_errors
            .inc_by(now.decode_errors - previous.decode_errors);
        self.durable_rows_written
            .inc_by(now.rows_written - previous.rows_written);
        self.durable_dead_lettered
            .inc_by(now.dead_lettered - previous.dead_lettered);
        self.durable_rejected_rows
            .inc_by(now.rejected_rows - previous.rejected_rows);
        self.durable_write_retries
            .inc_by(now.write_retries - previous.write_retries);
    }
}
