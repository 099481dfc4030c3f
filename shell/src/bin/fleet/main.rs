//! `fleet`: a simulated fleet of Teltonika trackers publishing to the telemetry stream.
//!
//! The one producer of the project: the demo and every benchmark use it.
//!
//! - `fleet stream`: real-time reports at a total rate, fix time = now (live path and demo).
//! - `fleet trackers`: the same devices as Teltonika trackers talking codec 8E over TCP to
//!   `processor gateway` (the demo's whole chain, and the gateway benchmark).
//! - `fleet preload`: N back-dated reports appended as fast as Redis takes them (durable
//!   throughput benchmark).
//! - `fleet seed`: the demo's public and private events with this fleet's devices (the last
//!   one in no event), and a token for the private event.
//! - `fleet copy-ceiling`: the same N rows, binary-COPYed into an unindexed table: the
//!   fastest Postgres can take them, the ceiling the durable benchmark is compared with.

mod device;
mod fleet;
mod rng;
mod seed;
mod trackers;

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use device::Area;
use fleet::{Fleet, Imperfections};

#[derive(Parser)]
#[command(
    name = "fleet",
    about = "Simulated trackers publishing to the telemetry stream"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args)]
struct Common {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(
        long,
        env = "REDIS_TELEMETRY_STREAM",
        default_value = "telemetry:teltonika"
    )]
    stream: String,
    /// Number of trackers; device i has id 356307040000000 + i.
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Every random choice follows from this seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Interval between one device's reports, in fix time.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: i64,
    /// Share of reports sent twice.
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
    /// Share of reports buffered and uploaded late, out of order.
    #[arg(long, default_value_t = 0.01)]
    late_rate: f64,
    /// Share of reports at (0, 0).
    #[arg(long, default_value_t = 0.001)]
    null_island_rate: f64,
    /// Share of reports without satellites.
    #[arg(long, default_value_t = 0.002)]
    no_fix_rate: f64,
    /// Centre and radius of the area devices move in.
    #[arg(long, default_value_t = 54.6872)]
    center_lat: f64,
    #[arg(long, default_value_t = 25.2797)]
    center_lon: f64,
    #[arg(long, default_value_t = 5_000.0)]
    radius_m: f64,
}

#[derive(Subcommand)]
enum Mode {
    /// Publish in real time at `rate` reports per second across the fleet.
    Stream {
        #[arg(long, default_value_t = 1_000.0)]
        rate: f64,
        /// Stop after this many seconds (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        duration_s: u64,
    },
    /// Be Teltonika trackers: one TCP connection per device to a gateway, codec 8E packets of
    /// 1 to `max_records` records, each sent after the last one was acknowledged.
    Trackers {
        /// The gateway's TCP address.
        #[arg(long, default_value = "127.0.0.1:5027")]
        gateway: std::net::SocketAddr,
        /// Shortest and longest pause between a tracker's packets.
        #[arg(long, default_value_t = 1_000)]
        min_interval_ms: u64,
        #[arg(long, default_value_t = 5_000)]
        max_interval_ms: u64,
        #[arg(long, default_value_t = 5)]
        max_records: u8,
        /// Send the next packet as soon as the last is acknowledged (throughput).
        #[arg(long)]
        flood: bool,
        /// Connect and hand-shake, then stay silent (memory per idle connection).
        #[arg(long)]
        idle: bool,
        /// Connections opened per second at start.
        #[arg(long, default_value_t = 2_000)]
        connects_per_s: u64,
        /// Stop after this many seconds (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        duration_s: u64,
    },
    /// Append `count` back-dated reports as fast as possible, then exit.
    Preload {
        #[arg(long)]
        count: u64,
    },
    /// Write the demo events and their devices; print their ids and a demo token.
    #[command(after_help = SEED_SECRET_HELP)]
    Seed {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
    },
    /// COPY the rows `preload --count` would produce into an unindexed table; print rows/s.
    CopyCeiling {
        #[arg(long)]
        count: u64,
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
    },
}

/// The secret `seed` signs the demo token with. Like the processor's (shell/src/config.rs),
/// it has no flag: a command line is visible to every user in `ps`.
const SEED_SECRET_VAR: &str = "LIVE_AUTH_JWT_SECRET";

/// `fleet seed --help` lists the variable without a flag, as `processor --help` does.
const SEED_SECRET_HELP: &str = "\
Environment only (no flag, so that the value never shows in `ps`):
      LIVE_AUTH_JWT_SECRET
          HS256 secret the processor checks tokens with; set, a token for the private event
          is printed (DEMO_TOKEN=...)
          [env: LIVE_AUTH_JWT_SECRET]";

/// `LIVE_AUTH_JWT_SECRET`, read from the environment only; empty counts as unset, as the
/// processor treats it.
fn seed_secret() -> Result<Option<String>, String> {
    match std::env::var(SEED_SECRET_VAR) {
        Ok(secret) if secret.is_empty() => Ok(None),
        Ok(secret) => Ok(Some(secret)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{SEED_SECRET_VAR}: is not valid UTF-8"))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn fleet(common: &Common, start_ts: i64, interval_ms: i64) -> Fleet {
    Fleet::new(
        common.seed,
        common.devices,
        Area {
            lat: common.center_lat,
            lon: common.center_lon,
            radius_m: common.radius_m,
        },
        start_ts,
        interval_ms,
        imperfections(common),
    )
}

fn imperfections(common: &Common) -> Imperfections {
    Imperfections {
        duplicate: common.duplicate_rate,
        late: common.late_rate,
        null_island: common.null_island_rate,
        no_fix: common.no_fix_rate,
    }
}

/// Fix times of a preload end about now, so nothing is "in the future".
fn preload_start(common: &Common, count: u64) -> i64 {
    let per_device = count / common.devices.max(1) as u64 + 1;
    now_ms() - per_device as i64 * common.interval_ms
}

async fn run(cli: Cli) -> Result<(), String> {
    let common = &cli.common;
    match cli.mode {
        Mode::Stream { rate, duration_s } => stream(common, rate, duration_s).await,
        Mode::Preload { count } => preload(common, count).await,
        Mode::Trackers {
            gateway,
            min_interval_ms,
            max_interval_ms,
            max_records,
            flood,
            idle,
            connects_per_s,
            duration_s,
        } => {
            if min_interval_ms > max_interval_ms {
                return Err("--min-interval-ms must not exceed --max-interval-ms".into());
            }
            let pace = match (flood, idle) {
                (true, true) => return Err("--flood and --idle exclude each other".into()),
                (true, false) => trackers::Pace::Flood,
                (false, true) => trackers::Pace::Idle,
                (false, false) => trackers::Pace::Every {
                    min_ms: min_interval_ms,
                    max_ms: max_interval_ms,
                },
            };
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let deadline = async {
                    if duration_s == 0 {
                        std::future::pending::<()>().await
                    } else {
                        tokio::time::sleep(Duration::from_secs(duration_s)).await
                    }
                };
                tokio::select! {
                    _ = deadline => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                let _ = stop_tx.send(true);
            });
            let area = Area {
                lat: common.center_lat,
                lon: common.center_lon,
                radius_m: common.radius_m,
            };
            let plan = trackers::Plan {
                gateway,
                pace,
                max_records,
                imperfections: imperfections(common),
                connects_per_s,
            };
            trackers::run(common.devices, common.seed, area, plan, stop).await
        }
        Mode::Seed { ref database_url } => {
            let secret = seed_secret()?;
            seed::seed(database_url, common.devices, secret.as_deref()).await
        }
        Mode::CopyCeiling {
            count,
            ref database_url,
        } => copy_ceiling(common, count, database_url).await,
    }
}

async fn connect(common: &Common) -> Result<redis::aio::MultiplexedConnection, String> {
    redis::Client::open(common.redis_url.as_str())
        .map_err(|e| format!("--redis-url: {e}"))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot connect to Redis: {e}"))
}

async fn xadd_all(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    payloads: &[String],
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for p in payloads {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("payload")
            .arg(p)
            .ignore();
    }
    pipe.query_async::<()>(conn)
        .await
        .map_err(|e| format!("XADD failed: {e}"))
}

async fn preload(common: &Common, count: u64) -> Result<(), String> {
    let mut conn = connect(common).await?;
    let mut fleet = fleet(common, preload_start(common, count), common.interval_ms);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1_100);
    let mut sent = 0u64;
    while sent < count {
        batch.clear();
        while batch.len() < 1_000 && sent + (batch.len() as u64) < count {
            fleet.next(&mut batch);
        }
        batch.truncate((count - sent) as usize);
        xadd_all(&mut conn, &common.stream, &batch).await?;
        sent += batch.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"preload\",\"entries\":{sent},\"devices\":{},\"seconds\":{secs:.3},\"entries_per_s\":{:.0}}}",
        fleet.devices(),
        sent as f64 / secs
    );
    Ok(())
}

async fn stream(common: &Common, rate: f64, duration_s: u64) -> Result<(), String> {
    if !(rate > 0.0 && rate.is_finite()) {
        return Err("--rate must be a positive number".into());
    }
    let mut conn = connect(common).await?;
    // Real-time: each device reports every devices/rate seconds, fix time = now.
    let interval_ms = ((common.devices as f64 / rate) * 1_000.0).max(1.0) as i64;
    let mut fleet = fleet(common, now_ms(), interval_ms);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut batch = Vec::new();
    let mut last_report = Instant::now();
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if duration_s > 0 && elapsed >= Duration::from_secs(duration_s) {
            break;
        }
        // Every report whose fix time has come: fix times follow the wall clock.
        batch.clear();
        let now = now_ms();
        while fleet.next_due().is_some_and(|t| t <= now) {
            fleet.next(&mut batch);
        }
        if !batch.is_empty() {
            xadd_all(&mut conn, &common.stream, &batch).await?;
            sent += batch.len() as u64;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!("fleet: {sent} reports in {:.1}s", elapsed.as_secs_f64());
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"stream\",\"entries\":{sent},\"devices\":{},\"seconds\":{secs:.3},\"entries_per_s\":{:.0}}}",
        fleet.devices(),
        sent as f64 / secs
    );
    Ok(())
}

async fn copy_ceiling(common: &Common, count: u64, database_url: &str) -> Result<(), String> {
    use futures_util::pin_mut;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::{ToSql, Type};

    let mut fleet = fleet(common, preload_start(common, count), common.interval_ms);
    let mut payloads = Vec::with_capacity(count as usize + 16);
    while (payloads.len() as u64) < count {
        fleet.next(&mut payloads);
    }
    payloads.truncate(count as usize);
    let positions: Vec<_> = payloads
        .iter()
        .filter_map(|p| processor_core::decode_position(p.as_bytes()).ok())
        .collect();

    let (client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to Postgres: {e}"))?;
    tokio::spawn(conn);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_copy_ceiling;
             CREATE TABLE bench_copy_ceiling (LIKE positions INCLUDING DEFAULTS)",
        )
        .await
        .map_err(|e| format!("cannot create the ceiling table (migrate first): {e}"))?;
    let types = [
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::INT2,
        Type::INT2,
        Type::INT4,
        Type::JSONB,
        Type::BOOL,
        Type::TIMESTAMPTZ,
    ];
    let started = Instant::now();
    let sink = client
        .copy_in("COPY bench_copy_ceiling FROM STDIN (FORMAT binary)")
        .await
        .map_err(|e| format!("COPY failed: {e}"))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let received = SystemTime::now();
    for p in &positions {
        let ts = UNIX_EPOCH + Duration::from_millis(p.ts.as_i64() as u64);
        let sats = i16::from(p.satellites);
        let prio = i16::from(p.priority);
        let attrs = p.attributes_json();
        let faulty = false;
        let row: [&(dyn ToSql + Sync); 13] = [
            &p.device_id,
            &ts,
            &p.latitude,
            &p.longitude,
            &p.altitude,
            &p.angle,
            &p.speed,
            &sats,
            &prio,
            &p.event_io_id,
            &attrs,
            &faulty,
            &received,
        ];
        writer
            .as_mut()
            .write(&row)
            .await
            .map_err(|e| format!("COPY failed: {e}"))?;
    }
    let rows = writer
        .finish()
        .await
        .map_err(|e| format!("COPY failed: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    client
        .batch_execute("DROP TABLE bench_copy_ceiling")
        .await
        .map_err(|e| format!("cannot drop the ceiling table: {e}"))?;
    println!(
        "{{\"mode\":\"copy-ceiling\",\"rows\":{rows},\"seconds\":{secs:.3},\"rows_per_s\":{:.0}}}",
        rows as f64 / secs
    );
    Ok(())
}
