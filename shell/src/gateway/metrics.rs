//! The gateway's metrics (contract §8.5), all exposed from start-up with every label value,
//! and what `/readyz` waits for.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use processor_core::teltonika::{BadPacket, Transport};

use crate::ops_server::OpsSource;

type Labels = Vec<(&'static str, &'static str)>;

pub struct GatewayMetrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub connections_rejected: Counter,
    pub devices_rejected: Counter,
    packets: Family<Labels, Counter>,
    /// The family's counters, by [`Transport`] and [`BadPacket`] in their `ALL` order, so
    /// that counting a packet takes no look-up.
    packets_by_transport: Vec<Counter>,
    pub records: Counter,
    bad_packets: Family<Labels, Counter>,
    bad_by_reason: Vec<Counter>,
    pub redis_errors: Counter,
    pub idle_closes: Counter,
    pub ack_seconds: Histogram,
    pub accept_errors: Counter,
    ready: Readiness,
}

/// What `/readyz` waits for.
#[derive(Debug, Default)]
struct Readiness {
    listeners: AtomicBool,
    redis: AtomicBool,
    /// True from the start when the allow-list is off.
    allow_list: AtomicBool,
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        let mut registry = Registry::default();
        let m = GatewayMetrics {
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_rejected: Counter::default(),
            devices_rejected: Counter::default(),
            packets: Family::default(),
            packets_by_transport: Vec::new(),
            records: Counter::default(),
            bad_packets: Family::default(),
            bad_by_reason: Vec::new(),
            redis_errors: Counter::default(),
            idle_closes: Counter::default(),
            // 0.5 ms to ~16 s.
            ack_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            accept_errors: Counter::default(),
            registry: Registry::default(),
            ready: Readiness::default(),
        };
        let packets_by_transport = Transport::ALL
            .iter()
            .map(|t| {
                m.packets
                    .get_or_create(&vec![("transport", t.label())])
                    .clone()
            })
            .collect();
        let bad_by_reason = BadPacket::ALL
            .iter()
            .map(|r| {
                m.bad_packets
                    .get_or_create(&vec![("reason", r.label())])
                    .clone()
            })
            .collect();
        let r = &mut registry;
        r.register(
            "processor_gateway_connections",
            "Open tracker TCP connections",
            m.connections.clone(),
        );
        r.register(
            "processor_gateway_connections_accepted",
            "Tracker TCP connections accepted",
            m.connections_accepted.clone(),
        );
        r.register(
            "processor_gateway_connections_rejected",
            "Tracker TCP connections closed at once for GATEWAY_MAX_CONNECTIONS",
            m.connections_rejected.clone(),
        );
        r.register(
            "processor_gateway_devices_rejected",
            "Handshakes answered 00, and datagrams dropped for their IMEI",
            m.devices_rejected.clone(),
        );
        r.register(
            "processor_gateway_packets",
            "AVL packets acknowledged",
            m.packets.clone(),
        );
        r.register(
            "processor_gateway_records",
            "Stream entries appended for acknowledged packets",
            m.records.clone(),
        );
        r.register(
            "processor_gateway_bad_packets",
            "Packets refused, by the first check they failed",
            m.bad_packets.clone(),
        );
        r.register(
            "processor_gateway_redis_errors",
            "Packets not acknowledged because Redis failed or did not confirm in time",
            m.redis_errors.clone(),
        );
        r.register(
            "processor_gateway_idle_closes",
            "TCP connections closed after GATEWAY_IDLE_TIMEOUT_MS without a complete frame",
            m.idle_closes.clone(),
        );
        r.register(
            "processor_gateway_ack_seconds",
            "From a packet's last byte to its acknowledgement",
            m.ack_seconds.clone(),
        );
        r.register(
            "processor_gateway_accept_errors",
            "Failed accepts on GATEWAY_TCP_ADDR or METRICS_ADDR (out of file descriptors or memory)",
            m.accept_errors.clone(),
        );
        GatewayMetrics {
            registry,
            packets_by_transport,
            bad_by_reason,
            ..m
        }
    }

    pub fn packet_acked(&self, transport: Transport, records: u64, seconds: f64) {
        if let Some(c) = Transport::ALL
            .iter()
            .position(|t| *t == transport)
            .and_then(|i| self.packets_by_transport.get(i))
        {
            c.inc();
        }
        self.records.inc_by(records);
        self.ack_seconds.observe(seconds);
    }

    pub fn bad_packet(&self, reason: BadPacket) {
        if let Some(c) = BadPacket::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.bad_by_reason.get(i))
        {
            c.inc();
        }
    }

    pub fn set_listeners_bound(&self) {
        self.ready.listeners.store(true, Ordering::Relaxed);
    }

    pub fn set_redis(&self, up: bool) {
        self.ready.redis.store(up, Ordering::Relaxed);
    }

    pub fn set_allow_list_read(&self) {
        self.ready.allow_list.store(true, Ordering::Relaxed);
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}

impl OpsSource for GatewayMetrics {
    fn render_metrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    fn not_ready(&self) -> Vec<&'static str> {
        let r = &self.ready;
        [
            (&r.listeners, "listeners"),
            (&r.redis, "redis"),
            (&r.allow_list, "allow-list"),
        ]
        .into_iter()
        .filter(|(flag, _)| !flag.load(Ordering::Relaxed))
        .map(|(_, name)| name)
        .collect()
    }
}
