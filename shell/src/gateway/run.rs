//! `processor gateway`: bind the listeners (even while Redis is down), serve trackers, and on
//! SIGTERM/SIGINT stop in the contract's order (§8.5): listeners closed and reading stopped,
//! packets in flight finished and acknowledged if confirmed, connections closed, Redis
//! closed, exit 0.

use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use processor_core::teltonika::AllowList;

use super::appender::{keep_connected, run_pipelines, RedisAppender, RedisPipeline};
use super::config::GatewayConfig;
use super::connection::Gateway;
use super::metrics::GatewayMetrics;
use super::{allow_list, tcp, udp};
use crate::clock::{MonoClock, SystemClock};
use crate::edge::http::HttpLimits;
use crate::edge::open_files;
use crate::edge::slots::ConnectionSlots;
use crate::ops_server::{self, OpsSource};
use crate::stop_signal::stop_on_signal;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Startup(String),
}

pub async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let startup = GatewayError::Startup;
    tracing::info!("gateway starting");
    let metrics = Arc::new(GatewayMetrics::new());
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop_tx));

    let ops_listener = ops_server::bind(config.metrics_addr)
        .await
        .map_err(|e| startup(e.to_string()))?;
    let tcp_listener = TcpListener::bind(config.gateway_tcp_addr)
        .await
        .map_err(|e| {
            startup(format!(
                "cannot listen on GATEWAY_TCP_ADDR {}: {e}",
                config.gateway_tcp_addr
            ))
        })?;
    let udp_socket = match config.gateway_udp_addr.0 {
        Some(addr) => Some(
            UdpSocket::bind(addr)
                .await
                .map_err(|e| startup(format!("cannot bind GATEWAY_UDP_ADDR {addr}: {e}")))?,
        ),
        None => None,
    };
    metrics.set_listeners_bound();
    tracing::info!(
        tcp = %config.gateway_tcp_addr,
        udp = ?config.gateway_udp_addr.0,
        metrics = %config.metrics_addr,
        "listening"
    );
    let (ops_stop_tx, ops_stop) = watch::channel(false);
    let ops = tokio::spawn(ops_server::serve(
        ops_listener,
        metrics.clone() as Arc<dyn OpsSource>,
        metrics.accept_errors.clone(),
        HttpLimits::default(),
        ops_stop,
    ));

    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| startup(format!("REDIS_URL: {e}")))?;
    let (connection_tx, connection) = watch::channel(None);
    let redis = tokio::spawn(keep_connected(
        client,
        config.ack_timeout(),
        connection_tx,
        metrics.clone(),
        stop.clone(),
    ));

    let everyone = config.gateway_accept_unknown_devices;
    let (allow_tx, allow) = watch::channel(Arc::new(if everyone {
        AllowList::Everyone
    } else {
        AllowList::Only(Default::default())
    }));
    let refresh = if everyone {
        metrics.set_allow_list_read();
        None
    } else {
        Some(tokio::spawn(allow_list::refresh(
            config.database_url.clone(),
            config.refresh(),
            allow_tx,
            metrics.clone(),
            stop.clone(),
        )))
    };

    let (appender, queue) = RedisAppender::new();
    let pipelines = tokio::spawn(run_pipelines(
        RedisPipeline {
            stream: config.redis_telemetry_stream.clone(),
            connection,
        },
        queue,
    ));
    let gateway = Arc::new(Gateway {
        session: config.session(),
        appender,
        allow,
        metrics: metrics.clone(),
        mono: MonoClock::start(),
        wall: SystemClock,
    });
    let cap = open_files::fit_connections(
        config.gateway_max_connections as usize,
        "GATEWAY_MAX_CONNECTIONS",
    );
    let tcp = tokio::spawn(tcp::serve_tcp(
        tcp_listener,
        ConnectionSlots::new(cap),
        gateway.clone(),
        stop.clone(),
    ));
    let udp = udp_socket.map(|socket| {
        tokio::spawn(udp::serve_udp(
            socket,
            config.gateway_max_packet_bytes as usize,
            config.ack_timeout(),
            gateway.clone(),
            stop.clone(),
        ))
    });

    let mut stopped = stop.clone();
    let _ = stopped.wait_for(|s| *s).await;
    tracing::info!("stopping: listeners closed, finishing packets in flight");
    let _ = tcp.await;
    if let Some(udp) = udp {
        let _ = udp.await;
    }
    if let Some(refresh) = refresh {
        let _ = refresh.await;
    }
    // The last appender goes with the gateway: the pipelines in flight finish, then the
    // Redis connection is closed.
    drop(gateway);
    let _ = pipelines.await;
    let _ = redis.await;
    let _ = ops_stop_tx.send(true);
    let _ = ops.await;
    tracing::info!("gateway stopped");
    Ok(())
}
