//! `processor`: start everything, wait for a signal, stop in the contract's order.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use processor_core::backoff::RECONNECT;
use processor_core::durable::DurableConfig;
use processor_core::faulty::FaultyThresholds;
use processor_core::live::{LiveConfig, SERVICE_VISIBILITY_CACHE_MS};

use crate::auth::Authenticator;
use crate::causes::with_causes;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::edge::open_files;
use crate::instance::{self, InstancePorts, InstanceSettings, SideTask};
use crate::live::ports::RedisBroadcast;
use crate::live::IngestPlacement;
use crate::map_page::MapPage;
use crate::metrics::Metrics;
use crate::postgres::{connect_one, create_pool, PositionStore};
use crate::readiness::Readiness;
use crate::redis_stream::broadcast::BroadcastGroup;
use crate::redis_stream::{control_connection, DurableStream};
use crate::{durable, health, migrate, ops_server, stop_signal, trimmer};

/// How long one broadcast read waits for new entries. Short, since a stop is only seen
/// between reads.
const BROADCAST_BLOCK: Duration = Duration::from_millis(1_000);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Startup(String),
}

/// Runs the service until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServiceError> {
    let instance_id = config.instance_id();
    tracing::info!(%instance_id, "processor starting");
    let metrics = Arc::new(Metrics::new(&instance_id));
    let readiness = Arc::new(Readiness::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(stop_signal::stop_on_signal(stop_tx));
    let (ops_stop_tx, ops_stop_rx) = watch::channel(false);

    let auth = Authenticator::from_settings(&config.live)
        .map_err(|e| ServiceError::Startup(with_causes(&e)))?;
    let map_page = MapPage::new(
        config
            .map
            .tile_layer()
            .map_err(|e| ServiceError::Startup(e.to_string()))?
            .as_ref(),
    );
    let listener = ops_server::bind(config.metrics_addr)
        .await
        .map_err(|e| ServiceError::Startup(with_causes(&e)))?;
    let ws_listener = TcpListener::bind(config.live_ws_addr).await.map_err(|e| {
        ServiceError::Startup(format!(
            "cannot listen on LIVE_WS_ADDR {}: {e}",
            config.live_ws_addr
        ))
    })?;
    let ops = tokio::spawn(ops_server::serve(
        listener,
        Arc::new(ops_server::ServiceOps {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
        }),
        metrics.live_accept_errors.clone(),
        config.live.http_limits(),
        ops_stop_rx,
    ));

    if config.migrate_on_start {
        let Some(()) = retry_until_stopped("apply migrations", stop_rx.clone(), || async {
            let mut client = connect_one(&config).await.map_err(|e| with_causes(&e))?;
            let applied = migrate::migrate(&mut client)
                .await
                .map_err(|e| with_causes(&e))?;
            for name in applied {
                tracing::info!(migration = name, "migration applied");
            }
            Ok(())
        })
        .await
        else {
            return Ok(());
        };
    }

    let redis = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| ServiceError::Startup(format!("REDIS_URL: {e}")))?;
    let Some(control) = retry_until_stopped("connect to Redis", stop_rx.clone(), || {
        let redis = redis.clone();
        async move { control_connection(redis).await.map_err(|e| with_causes(&e)) }
    })
    .await
    else {
        return Ok(());
    };
    let stream = DurableStream {
        stream: config.telemetry_stream.clone(),
        group: config.durable.group.clone(),
        consumer: instance_id.clone(),
        dead_letter_stream: config.dead_letter_stream.clone(),
    };
    let Some(()) =
        retry_until_stopped("create the durable consumer group", stop_rx.clone(), || {
            let (stream, mut conn) = (stream.clone(), control.clone());
            async move {
                stream
                    .ensure_group(&mut conn)
                    .await
                    .map_err(|e| with_causes(&e))
            }
        })
        .await
    else {
        return Ok(());
    };
    let pool = create_pool(&config).map_err(|e| ServiceError::Startup(with_causes(&e)))?;
    let store = PositionStore::new(pool.clone());
    let ports = InstancePorts {
        durable_stream: durable::ports::RedisStream {
            client: redis.clone(),
            control: control.clone(),
            stream: stream.clone(),
            block: Duration::from_millis(config.durable.block_ms),
        },
        durable_store: store.clone(),
        live_store: pool.clone(),
        listener: ws_listener,
        broadcast: RedisBroadcast {
            client: redis.clone(),
            control: control.clone(),
            group: BroadcastGroup {
                stream: config.telemetry_stream.clone(),
                prefix: config.live.broadcast_group_prefix.clone(),
                instance: instance_id.clone(),
            },
            ttl: Duration::from_millis(config.live.broadcast_group_ttl_ms),
            block: BROADCAST_BLOCK,
        },
        clock: SystemClock,
    };
    let settings = InstanceSettings {
        live: live_config(&config),
        durable: durable_config(&config),
        shards: config.live.shards(),
        map_refresh: Duration::from_millis(config.live.device_event_refresh_ms),
        ingest: IngestPlacement::OwnThread,
        limits: config.live.http_limits(),
        max_connections: open_files::fit_connections(
            config.live.max_connections as usize,
            "LIVE_WS_MAX_CONNECTIONS",
        ),
        map_page,
        auth,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let mut side_tasks: Vec<SideTask> = Vec::new();
    let (health_conn, health_stream, health_readiness, health_metrics) =
        (control.clone(), stream, readiness, metrics.clone());
    side_tasks.push(Box::new(move |stop| {
        Box::pin(health::run(
            health_conn,
            health_stream,
            store,
            health_readiness,
            health_metrics,
            stop,
        ))
    }));
    // Off (0) by default: trimming is a retention choice the operator makes.
    if config.durable.trim_interval_ms > 0 {
        let (conn, stream, group) = (
            control.clone(),
            config.telemetry_stream.clone(),
            config.durable.group.clone(),
        );
        let (interval, metrics) = (
            Duration::from_millis(config.durable.trim_interval_ms),
            metrics.clone(),
        );
        side_tasks.push(Box::new(move |stop| {
            Box::pin(trimmer::run(conn, stream, group, interval, metrics, stop))
        }));
    }

    instance::run(ports, settings, side_tasks, stop_rx, |stage| {
        tracing::debug!(?stage, "shutdown stage done")
    })
    .await;
    // The metrics endpoint outlives the rest, so that a scrape can see the shutdown through.
    let _ = ops_stop_tx.send(true);
    let _ = ops.await;
    drop(control);
    pool.close();
    tracing::info!("processor stopped");
    Ok(())
}

pub fn live_config(config: &Config) -> LiveConfig {
    let live = &config.live;
    LiveConfig {
        max_message_bytes: live.max_message_bytes as usize,
        max_bad_messages: live.max_bad_messages,
        max_subscriptions: live.max_subscriptions as usize,
        conflate_threshold_bytes: live.conflate_threshold_bytes,
        backpressure_threshold_bytes: live.backpressure_threshold_bytes,
        ping_interval_ms: live.ping_interval_ms,
        write_timeout_ms: live.write_timeout_ms,
        max_messages_per_s: live.max_messages_per_s,
        // A subscription's visibility is looked up again at the map's pace; the hub's short
        // cache of visibilities answers most of those look-ups.
        visibility_recheck_ms: live.device_event_refresh_ms,
        visibility_cache_ms: SERVICE_VISIBILITY_CACHE_MS,
        faulty: FaultyThresholds {
            min_satellites: config.faulty.min_satellites,
            max_future_ms: config.faulty.max_future_ms,
            min_timestamp: config.faulty.min_timestamp,
        },
        max_speed_kmh: config.faulty.max_speed_kmh,
        trail_max_s: live.trail_max_s,
        trail_max_points: live.trail_max_points as usize,
        trail_memory_points: live.trail_memory_points as usize,
        resume_max_positions: live.resume_max_positions as usize,
        replay_read_ahead: live.replay_read_ahead as usize,
        replay_max_per_connection: live.replay_max_per_connection as usize,
        // One limit for the instance: the shards share it (`ReplayBudget`).
        replay_max_total: live.replay_max_total as usize,
        ..LiveConfig::default()
    }
}

pub fn durable_config(config: &Config) -> DurableConfig {
    DurableConfig {
        batch_size: config.durable.batch_size as usize,
        max_in_flight: config.durable.max_in_flight as usize,
        max_deliveries: config.durable.max_deliveries,
        faulty: FaultyThresholds {
            min_satellites: config.faulty.min_satellites,
            max_future_ms: config.faulty.max_future_ms,
            min_timestamp: config.faulty.min_timestamp,
        },
        ..DurableConfig::for_claim_idle(config.durable.claim_idle_ms)
    }
}

/// Retries `attempt` with back-off until it succeeds (`Some`) or a stop is asked for (`None`).
async fn retry_until_stopped<T, F, Fut>(
    what: &str,
    mut stop: watch::Receiver<bool>,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut backoff = RECONNECT;
    loop {
        let delay = match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                let delay = backoff.failed();
                tracing::warn!(%error, retry_in_ms = delay, "cannot {what} yet");
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}
