//! Configuration: every environment variable of the contract, parsed once into [`Config`].
//!
//! clap does the parsing (and `processor --help`), so each variable's name, default and
//! accepted form live in one place; a bad value stops start-up with clap's message, which
//! names the variable.

use std::net::SocketAddr;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use processor_core::UnixMillis;

use crate::map_page::{self, TileLayer, TileTemplate};

/// Live GPS tracking processor: stores every position from the telemetry stream in Postgres
/// and pushes it to WebSocket clients.
///
/// Each option is read from the environment variable shown in its `[env: ...]`; the flag
/// beside it, where there is one, overrides the variable. Secrets (LIVE_AUTH_JWT_SECRET)
/// have no flag, since a command line is visible to every user in `ps`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "processor",
    version,
    about,
    after_help = SECRETS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    #[command(flatten)]
    pub config: Config,
}

/// The variables without a flag, laid out as clap lays out the others.
pub const SECRETS_HELP: &str = "\
Environment only (no flag, so that the value never shows in `ps`):
      LIVE_AUTH_JWT_SECRET
          HS256 secret for client tokens, at least 32 bytes
          [env: LIVE_AUTH_JWT_SECRET]";

const SECRET_VAR: &str = "LIVE_AUTH_JWT_SECRET";

#[derive(Debug, Clone, Subcommand)]
pub enum CliCommand {
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run the Teltonika gateway: trackers over TCP/UDP to the telemetry stream. It reads
    /// its own variables only: see `processor gateway --help`.
    #[command(disable_help_flag = true)]
    Gateway {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Set up events, entries and devices (needs only DATABASE_URL).
    Admin(crate::admin::AdminArgs),
}

/// `processor admin ...` parsed on its own: the service's options (and their variables) are
/// not parsed at all, so that a value meant for the service cannot stop an admin command.
#[derive(Debug, Clone, Parser)]
#[command(name = "processor", version)]
pub struct AdminCli {
    #[command(subcommand)]
    pub command: AdminOnly,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminOnly {
    /// Set up events, entries and devices (needs only DATABASE_URL).
    Admin(crate::admin::AdminArgs),
}

impl AdminCli {
    /// Whether the command line is an admin command (`processor admin ...`).
    pub fn is_admin_command() -> bool {
        std::env::args_os().nth(1).is_some_and(|a| a == "admin")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Redis server holding the telemetry stream. Prefer the variable when the URL carries
    /// a password: a flag shows in `ps`.
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Postgres connection string (URL or key=value form). Prefer the variable when it
    /// carries a password: a flag shows in `ps`.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,

    /// This instance's name in consumer groups and metrics [default: host name and process id].
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID", value_parser = parse_instance_id)]
    pub instance_id: Option<String>,

    /// Apply pending migrations before serving.
    #[arg(long, env = "MIGRATE_ON_START", value_name = "MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Log output: `text` for people, `json` for collectors.
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,processor_shell=debug`).
    #[arg(
        long,
        env = "LOG_LEVEL",
        value_name = "LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,

    /// Address of the WebSocket server (`GET /live`) and the live map page (`GET /`).
    #[arg(
        long,
        env = "LIVE_WS_ADDR",
        value_name = "LIVE_WS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub live_ws_addr: SocketAddr,

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "METRICS_ADDR",
        value_name = "METRICS_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_addr: SocketAddr,

    /// Stream the gateway appends positions to.
    #[arg(long, env = "REDIS_TELEMETRY_STREAM", value_name = "REDIS_TELEMETRY_STREAM", default_value = "telemetry:teltonika", value_parser = parse_non_empty)]
    pub telemetry_stream: String,

    /// Stream that receives entries which cannot be stored.
    #[arg(long, env = "DEAD_LETTER_STREAM", value_name = "DEAD_LETTER_STREAM", default_value = "telemetry:teltonika:dead-letter", value_parser = parse_non_empty)]
    pub dead_letter_stream: String,

    #[command(flatten)]
    pub durable: DurableSettings,

    #[command(flatten)]
    pub faulty: FaultySettings,

    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub live: LiveSettings,

    #[command(flatten)]
    pub map: MapSettings,

    /// Longest wait, on SIGTERM, for the batch in flight to commit before exiting anyway
    /// (what is not committed stays pending and is never acked).
    #[arg(
        long,
        env = "SHUTDOWN_GRACE_MS",
        value_name = "SHUTDOWN_GRACE_MS",
        default_value_t = 10_000
    )]
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct DurableSettings {
    /// Consumer group shared by all instances for the durable write.
    #[arg(long, env = "DURABLE_GROUP", value_name = "DURABLE_GROUP", default_value = "durable-write", value_parser = parse_non_empty)]
    pub group: String,

    /// Entries per read and rows per insert.
    #[arg(long, env = "DURABLE_BATCH_SIZE", value_name = "DURABLE_BATCH_SIZE", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub batch_size: u32,

    /// Inserts in flight at once (each holds one pooled connection).
    #[arg(long, env = "DURABLE_MAX_IN_FLIGHT", value_name = "DURABLE_MAX_IN_FLIGHT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_in_flight: u32,

    /// How long a blocking read waits for new entries.
    #[arg(long, env = "DURABLE_BLOCK_MS", value_name = "DURABLE_BLOCK_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub block_ms: u64,

    /// Pending entries idle this long are claimed from whichever consumer holds them.
    #[arg(long, env = "DURABLE_CLAIM_IDLE_MS", value_name = "DURABLE_CLAIM_IDLE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_idle_ms: u64,

    /// Deliveries after which an entry Postgres keeps rejecting is dead-lettered.
    #[arg(long, env = "DURABLE_MAX_DELIVERIES", value_name = "DURABLE_MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_deliveries: u64,

    /// Trim the telemetry stream this often, below what every consumer group has done with
    /// (0: never; trimming is left to the operator).
    #[arg(
        long,
        env = "STREAM_TRIM_INTERVAL_MS",
        value_name = "STREAM_TRIM_INTERVAL_MS",
        default_value_t = 0
    )]
    pub trim_interval_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct FaultySettings {
    /// Positions with fewer satellites are faulty.
    #[arg(
        long,
        env = "FAULTY_MIN_SATELLITES",
        value_name = "FAULTY_MIN_SATELLITES",
        default_value_t = 3
    )]
    pub min_satellites: u8,

    /// Positions whose fix time is further ahead of the processing time are faulty.
    #[arg(
        long,
        env = "FAULTY_MAX_FUTURE_MS",
        value_name = "FAULTY_MAX_FUTURE_MS",
        default_value_t = 60_000
    )]
    pub max_future_ms: u64,

    /// Positions whose fix time is earlier are faulty (a tracker whose clock was never set
    /// reports 1970 or 1980). RFC 3339.
    #[arg(long, env = "FAULTY_MIN_TIMESTAMP", value_name = "FAULTY_MIN_TIMESTAMP", default_value = "2010-01-01T00:00:00Z", value_parser = parse_rfc3339)]
    pub min_timestamp: UnixMillis,

    /// The live path drops a position implying a faster jump from the device's last one.
    #[arg(long, env = "FAULTY_MAX_SPEED_KMH", value_name = "FAULTY_MAX_SPEED_KMH", default_value_t = 500.0, value_parser = parse_positive_f64)]
    pub max_speed_kmh: f64,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// Connections in the Postgres pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", value_name = "DATABASE_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pool_size: u32,

    /// Longest wait to open a Postgres connection.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT_MS", value_name = "DATABASE_CONNECT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout_ms: u64,

    /// Longest wait for a free pooled connection.
    #[arg(long, env = "DATABASE_POOL_WAIT_TIMEOUT_MS", value_name = "DATABASE_POOL_WAIT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub pool_wait_timeout_ms: u64,

    /// Longest a single statement may run before it is treated as failed.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", value_name = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct LiveSettings {
    /// HS256 secret for client tokens: read from the environment only, by
    /// [`Config::load_secrets`] (clap has no argument that cannot be given as a flag or a
    /// positional, and a command line shows in `ps`). `--help` lists it in [`SECRETS_HELP`].
    #[arg(skip)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RS256 or ES256) for client tokens.
    #[arg(
        long,
        env = "LIVE_AUTH_JWT_PUBLIC_KEY_FILE",
        value_name = "LIVE_AUTH_JWT_PUBLIC_KEY_FILE"
    )]
    pub jwt_public_key_file: Option<std::path::PathBuf>,

    /// Accept clients without a token (they see public events only).
    #[arg(long, env = "LIVE_ALLOW_ANONYMOUS", value_name = "LIVE_ALLOW_ANONYMOUS", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_anonymous: bool,

    /// Outbound bytes queued for a client above which its updates are conflated.
    #[arg(long, env = "LIVE_WS_CONFLATE_THRESHOLD_BYTES", value_name = "LIVE_WS_CONFLATE_THRESHOLD_BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub conflate_threshold_bytes: u64,

    /// Outbound bytes queued for a client above which it is closed with 1013.
    #[arg(long, env = "LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES", value_name = "LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub backpressure_threshold_bytes: u64,

    /// Largest client text frame answered normally; larger ones get `bad_request`.
    #[arg(long, env = "LIVE_WS_MAX_MESSAGE_BYTES", value_name = "LIVE_WS_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_message_bytes: u64,

    /// `bad_request`s after which a connection is closed with 1008.
    #[arg(
        long,
        env = "LIVE_WS_MAX_BAD_MESSAGES",
        value_name = "LIVE_WS_MAX_BAD_MESSAGES",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_bad_messages: u32,

    /// Topics one connection may subscribe to.
    #[arg(
        long,
        env = "LIVE_WS_MAX_SUBSCRIPTIONS",
        value_name = "LIVE_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_subscriptions: u32,

    /// Interval between server pings; no pong within two intervals closes the connection.
    #[arg(long, env = "LIVE_WS_PING_INTERVAL_MS", value_name = "LIVE_WS_PING_INTERVAL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval_ms: u64,

    /// Prefix of this instance's broadcast consumer group.
    #[arg(long, env = "LIVE_BROADCAST_GROUP_PREFIX", value_name = "LIVE_BROADCAST_GROUP_PREFIX", default_value = "live-broadcast", value_parser = parse_non_empty)]
    pub broadcast_group_prefix: String,

    /// Age of a heartbeat after which a broadcast group's instance counts as dead.
    #[arg(long, env = "LIVE_BROADCAST_GROUP_TTL_MS", value_name = "LIVE_BROADCAST_GROUP_TTL_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub broadcast_group_ttl_ms: u64,

    /// Interval between reloads of the device-to-event map.
    #[arg(long, env = "LIVE_DEVICE_EVENT_REFRESH_MS", value_name = "LIVE_DEVICE_EVENT_REFRESH_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub device_event_refresh_ms: u64,

    /// Hub shards the WebSocket connections are spread over, each on its own task; default:
    /// the number of cores.
    #[arg(long, env = "LIVE_HUB_SHARDS", value_name = "LIVE_HUB_SHARDS", value_parser = clap::value_parser!(u16).range(1..))]
    pub hub_shards: Option<u16>,

    /// WebSockets open at once; one more is refused with 503 before the upgrade. Lowered at
    /// start-up when the open-files limit cannot hold it.
    #[arg(long, env = "LIVE_WS_MAX_CONNECTIONS", value_name = "LIVE_WS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// A request head (the first of a connection) must arrive complete within this long,
    /// on LIVE_WS_ADDR and METRICS_ADDR.
    #[arg(long, env = "LIVE_HTTP_HEADER_TIMEOUT_MS", value_name = "LIVE_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,

    /// An idle keep-alive HTTP connection is closed after this long (its next request head
    /// must be complete by then), on LIVE_WS_ADDR and METRICS_ADDR.
    #[arg(long, env = "LIVE_HTTP_IDLE_TIMEOUT_MS", value_name = "LIVE_HTTP_IDLE_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_idle_timeout_ms: u64,

    /// Client messages per second, in bursts of as many; one over the rate gets
    /// `limit_exceeded` and counts as a bad message.
    #[arg(long, env = "LIVE_WS_MAX_MESSAGES_PER_S", value_name = "LIVE_WS_MAX_MESSAGES_PER_S", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_messages_per_s: u32,

    /// The longest trail a subscribe may ask for (`trail_s`), seconds.
    #[arg(long, env = "LIVE_TRAIL_MAX_S", value_name = "LIVE_TRAIL_MAX_S", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub trail_max_s: u64,

    /// Points in one device's trail at most; more are thinned evenly, the oldest kept.
    #[arg(long, env = "LIVE_TRAIL_MAX_POINTS", value_name = "LIVE_TRAIL_MAX_POINTS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub trail_max_points: u32,

    /// Recent fixes kept in memory per device (about 48 bytes each), so that trails,
    /// resumes and snapshots within them read no Postgres; 0 keeps none.
    #[arg(long, env = "LIVE_TRAIL_MEMORY_POINTS", value_name = "LIVE_TRAIL_MEMORY_POINTS", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub trail_memory_points: u32,

    /// Positions a resumed snapshot (`since`) holds at most; with more, it holds the newest
    /// position per device and `truncated`.
    #[arg(long, env = "LIVE_RESUME_MAX_POSITIONS", value_name = "LIVE_RESUME_MAX_POSITIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub resume_max_positions: u32,

    /// Positions held for one replay at most (read ahead of its clock).
    #[arg(long, env = "LIVE_REPLAY_READ_AHEAD", value_name = "LIVE_REPLAY_READ_AHEAD", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub replay_read_ahead: u32,

    /// Replays one connection runs at once.
    #[arg(long, env = "LIVE_REPLAY_MAX_PER_CONNECTION", value_name = "LIVE_REPLAY_MAX_PER_CONNECTION", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub replay_max_per_connection: u32,

    /// Replays the instance runs at once.
    #[arg(long, env = "LIVE_REPLAY_MAX_TOTAL", value_name = "LIVE_REPLAY_MAX_TOTAL", default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub replay_max_total: u32,

    /// A client whose socket holds unwritten bytes and takes none for this long is closed
    /// with 1013.
    #[arg(long, env = "LIVE_WS_WRITE_TIMEOUT_MS", value_name = "LIVE_WS_WRITE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout_ms: u64,
}

/// The live map page's optional tile layer. Plain strings here, checked by
/// [`MapSettings::tile_layer`] (from [`Config::validate`]): an empty value must mean "off",
/// which a clap value parser of the template alone cannot say.
#[derive(Debug, Clone, Args)]
pub struct MapSettings {
    /// Tile layer under the live map page: an http(s) XYZ URL template with {z}, {x} and
    /// {y}, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png (mind the provider's usage
    /// policy). Unset or empty: no tiles, and the page loads nothing from anywhere else
    /// [default: none]
    #[arg(
        long = "map-tile-url",
        env = "LIVE_MAP_TILE_URL",
        value_name = "LIVE_MAP_TILE_URL"
    )]
    pub tile_url: Option<String>,

    /// Attribution shown in the map's corner under the tiles; unset on OpenStreetMap's own
    /// tiles: "© OpenStreetMap contributors" [default: none]
    #[arg(
        long = "map-tile-attribution",
        env = "LIVE_MAP_TILE_ATTRIBUTION",
        value_name = "LIVE_MAP_TILE_ATTRIBUTION"
    )]
    pub tile_attribution: Option<String>,
}

impl MapSettings {
    /// The tile layer, `None` when `LIVE_MAP_TILE_URL` is unset or empty.
    pub fn tile_layer(&self) -> Result<Option<TileLayer>, ConfigError> {
        let Some(url) = self.tile_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let template = TileTemplate::parse(url).map_err(|problem| ConfigError {
            variable: "LIVE_MAP_TILE_URL",
            problem,
        })?;
        let attribution = self.tile_attribution.as_deref().unwrap_or_default();
        map_page::check_attribution(attribution).map_err(|problem| ConfigError {
            variable: "LIVE_MAP_TILE_ATTRIBUTION",
            problem,
        })?;
        Ok(Some(TileLayer::new(template, attribution)))
    }
}

impl LiveSettings {
    /// The HTTP bounds of both listeners.
    pub fn http_limits(&self) -> crate::edge::http::HttpLimits {
        crate::edge::http::HttpLimits {
            header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.http_idle_timeout_ms),
        }
    }

    /// `LIVE_HUB_SHARDS`, or the number of cores.
    pub fn shards(&self) -> usize {
        match self.hub_shards {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A configuration error found after parsing: values that are fine alone but not together.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the variables that have no flag. An empty one counts as unset, as clap
    /// treats the others.
    pub fn load_secrets(&mut self) -> Result<(), ConfigError> {
        self.live.jwt_secret = match std::env::var(SECRET_VAR) {
            Ok(secret) if secret.is_empty() => None,
            Ok(secret) => Some(secret),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ConfigError {
                    variable: SECRET_VAR,
                    problem: "is not valid UTF-8".into(),
                })
            }
        };
        Ok(())
    }

    /// Checks the rules that tie variables together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_redis_url(&self.redis_url)?;
        check_database_url(&self.database_url)?;
        if self.live.conflate_threshold_bytes >= self.live.backpressure_threshold_bytes {
            return Err(ConfigError {
                variable: "LIVE_WS_CONFLATE_THRESHOLD_BYTES",
                problem: format!(
                    "must be below LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES ({})",
                    self.live.backpressure_threshold_bytes
                ),
            });
        }
        if self.durable.max_in_flight > self.database.pool_size {
            return Err(ConfigError {
                variable: "DURABLE_MAX_IN_FLIGHT",
                problem: format!(
                    "must not exceed DATABASE_POOL_SIZE ({})",
                    self.database.pool_size
                ),
            });
        }
        if self.live.jwt_secret.is_some() && self.live.jwt_public_key_file.is_some() {
            return Err(ConfigError {
                variable: "LIVE_AUTH_JWT_SECRET",
                problem: "set either it or LIVE_AUTH_JWT_PUBLIC_KEY_FILE, not both".into(),
            });
        }
        self.map.tile_layer()?;
        Ok(())
    }

    /// `INSTANCE_ID`, or host name and process id.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "processor".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// The password in a URL (`scheme://user:password@host`) or a key=value connection string
/// (`password=...`), so that an error can leave it out.
fn password_in(url: &str) -> Option<&str> {
    if let Some((_, rest)) = url.split_once("://") {
        let userinfo = rest.split(['/', '?', '#']).next()?.rsplit_once('@')?.0;
        return userinfo
            .split_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty());
    }
    url.split_whitespace()
        .find_map(|kv| kv.strip_prefix("password="))
        .map(|p| p.trim_matches('\''))
        .filter(|p| !p.is_empty())
}

/// `problem` with the URL's password, and the URL itself, replaced: config errors never
/// echo a secret (contract section 7).
pub fn redacted(problem: String, url: &str) -> String {
    let mut text = problem.replace(url, "<the value>");
    if let Some(password) = password_in(url) {
        text = text.replace(password, "***");
    }
    text
}

pub(crate) fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| ConfigError {
            variable: "REDIS_URL",
            problem: redacted(format!("expected a redis:// or rediss:// URL ({e})"), url),
        })
}

pub(crate) fn check_database_url(url: &str) -> Result<(), ConfigError> {
    tokio_postgres::Config::from_str(url)
        .map(|_| ())
        .map_err(|e| ConfigError {
            variable: "DATABASE_URL",
            problem: redacted(
                format!("expected a postgres:// URL or key=value connection string ({e})"),
                url,
            ),
        })
}

fn parse_rfc3339(s: &str) -> Result<UnixMillis, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "expected an RFC 3339 time, e.g. 2010-01-01T00:00:00Z".to_owned())?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map(UnixMillis)
        .map_err(|_| "out of range".to_owned())
}

pub(crate) fn parse_non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_owned())
    }
}

fn parse_instance_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) {
        Err("expected 1 to 128 printable ASCII characters without spaces".into())
    } else {
        Ok(s.to_owned())
    }
}

fn parse_positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a positive number".into()),
    }
}
