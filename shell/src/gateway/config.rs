//! `processor gateway`'s configuration: the variables it reads, and nothing of the service's.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser};

use processor_core::teltonika::SessionConfig;

use crate::config::{check_database_url, check_redis_url, parse_non_empty, ConfigError, LogFormat};

/// Teltonika gateway: accepts trackers over TCP (and UDP), appends one telemetry stream
/// entry per AVL record, and acknowledges a packet only once Redis has confirmed every
/// entry of it.
///
/// Every option is read from the environment variable shown beside it; the flag beside it
/// (the variable's name in lower case, with dashes) overrides it.
#[derive(Debug, Clone, Parser)]
#[command(name = "processor gateway", bin_name = "processor gateway", version)]
pub struct GatewayCli {
    #[command(flatten)]
    pub config: GatewayConfig,
}

#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Redis server holding the telemetry stream.
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Stream the records are appended to.
    #[arg(long, env = "REDIS_TELEMETRY_STREAM", value_name = "REDIS_TELEMETRY_STREAM", default_value = "telemetry:teltonika", value_parser = parse_non_empty)]
    pub redis_telemetry_stream: String,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "METRICS_ADDR",
        value_name = "METRICS_ADDR",
        default_value = "0.0.0.0:9091"
    )]
    pub metrics_addr: SocketAddr,

    /// Log output: `text` for people, `json` for collectors.
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,

    /// TCP listener for trackers (5027 is Traccar's Teltonika port).
    #[arg(
        long,
        env = "GATEWAY_TCP_ADDR",
        value_name = "GATEWAY_TCP_ADDR",
        default_value = "0.0.0.0:5027"
    )]
    pub gateway_tcp_addr: SocketAddr,

    /// UDP socket for trackers; empty: no UDP.
    #[arg(long, env = "GATEWAY_UDP_ADDR", value_name = "GATEWAY_UDP_ADDR", default_value = "", value_parser = parse_optional_addr)]
    pub gateway_udp_addr: OptionalAddr,

    /// `false`: only IMEIs that are a `device_id` in `entry_devices` (read from
    /// DATABASE_URL every LIVE_DEVICE_EVENT_REFRESH_MS) are answered `01`.
    #[arg(long, env = "GATEWAY_ACCEPT_UNKNOWN_DEVICES", value_name = "GATEWAY_ACCEPT_UNKNOWN_DEVICES", default_value_t = true, action = clap::ArgAction::Set)]
    pub gateway_accept_unknown_devices: bool,

    /// Postgres connection string; read only for the allow-list.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,

    /// How often the allow-list is read again.
    #[arg(long, env = "LIVE_DEVICE_EVENT_REFRESH_MS", value_name = "LIVE_DEVICE_EVENT_REFRESH_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub live_device_event_refresh_ms: u64,

    /// Largest TCP AVL packet (preamble to CRC) or UDP datagram, in bytes (3x Teltonika's
    /// documented 1,280).
    #[arg(long, env = "GATEWAY_MAX_PACKET_BYTES", value_name = "GATEWAY_MAX_PACKET_BYTES", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(16..=65_535))]
    pub gateway_max_packet_bytes: u32,

    /// Bad packets (cumulative) after which a TCP connection is closed.
    #[arg(long, env = "GATEWAY_MAX_BAD_PACKETS", value_name = "GATEWAY_MAX_BAD_PACKETS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub gateway_max_bad_packets: u32,

    /// A TCP connection with no complete frame for this long is closed.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_MS", value_name = "GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_idle_timeout_ms: u64,

    /// Open TCP connections; one more is closed at once, unread and unanswered.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", value_name = "GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub gateway_max_connections: u32,

    /// A packet's XADDs not all confirmed by then count as a Redis error (no ACK, and the
    /// TCP connection is closed).
    #[arg(long, env = "GATEWAY_ACK_TIMEOUT_MS", value_name = "GATEWAY_ACK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_ack_timeout_ms: u64,
}

/// An address, or none (the variable set to the empty string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.trim().is_empty() {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|_| "expected host:port (e.g. 0.0.0.0:5027) or nothing".into())
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_redis_url(&self.redis_url)?;
        if !self.gateway_accept_unknown_devices {
            check_database_url(&self.database_url)?;
        }
        Ok(())
    }

    pub fn session(&self) -> SessionConfig {
        SessionConfig {
            max_packet_bytes: self.gateway_max_packet_bytes as usize,
            max_bad_packets: self.gateway_max_bad_packets,
            idle_timeout_ms: self.gateway_idle_timeout_ms,
            ack_timeout_ms: self.gateway_ack_timeout_ms,
        }
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_ack_timeout_ms)
    }

    pub fn refresh(&self) -> Duration {
        Duration::from_millis(self.live_device_event_refresh_ms)
    }
}
