//! A whole processor instance as a turmoil host: the shell's durable loop and its live path
//! (hub shards, WebSocket server, broadcast consumer, device map refresh, started by the
//! shell's `hub::start` as the service starts them), over the network ports of this layer.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;

use processor_core::durable::DurableConfig;
use processor_core::live::LiveConfig;
use processor_shell::config::Cli;
use processor_shell::durable::{self, DurableContext};
use processor_shell::edge::http::HttpLimits;
use processor_shell::hub::{self, IngestPlacement, LivePlan};
use processor_shell::live::auth::Authenticator;
use processor_shell::map_page::MapPage;
use processor_shell::metrics::Metrics;
use processor_shell::readiness::Readiness;

use super::live_ports::{NetBroadcast, NetLiveStore, SimListener};
use super::ports::{NetStore, NetStream, SimClock};
use super::servers::Servers;
use super::ws_client::WS_PORT;

/// The HS256 secret client tokens of this layer are signed with.
pub const TOKEN_SECRET: &str = "sim-secret-of-at-least-32-bytes!";

/// A defect planted in how the sim wires an instance, to show the judging has teeth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetLiveDefect {
    #[default]
    None,
    /// The heartbeat is set when the group is opened and never again, so the other
    /// instance's sweep takes the group for a dead one's.
    StaleHeartbeat,
}

#[derive(Clone)]
pub struct InstancePlan {
    pub name: &'static str,
    pub skew_ms: i64,
    pub durable: DurableConfig,
    pub live: LiveConfig,
    pub map_refresh: Duration,
    pub group_ttl: Duration,
    /// Survives bounces, so the scenario can read what the instance counted.
    pub metrics: Arc<Metrics>,
    pub defect: NetLiveDefect,
}

fn authenticator() -> Result<Authenticator, String> {
    let mut cli = Cli::try_parse_from(["processor"]).map_err(|e| e.to_string())?;
    cli.config.live.jwt_secret = Some(TOKEN_SECRET.to_owned());
    Authenticator::from_settings(&cli.config.live).map_err(|e| e.to_string())
}

/// Runs until the host is crashed (instances of this layer are never asked to stop).
pub async fn run(servers: Servers, plan: InstancePlan) -> turmoil::Result {
    let clock = SimClock {
        skew_ms: plan.skew_ms,
    };
    let readiness = Arc::new(Readiness::default());
    let store = NetLiveStore {
        servers: servers.clone(),
    };
    let (_stop_tx, stop) = watch::channel(false);
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", WS_PORT)).await?;
    // The live path as the service starts it; two shards, so that a client's view is
    // judged across a shard boundary as well.
    let _live = hub::start(
        LivePlan {
            config: plan.live.clone(),
            shards: 2,
            store,
            clock,
            metrics: plan.metrics.clone(),
            readiness: readiness.clone(),
            auth: authenticator()?,
            listener: SimListener(listener),
            broadcast: NetBroadcast {
                servers: servers.clone(),
                instance: plan.name.to_owned(),
                ttl: plan.group_ttl,
                block_ms: 500,
                stale_heartbeat: plan.defect == NetLiveDefect::StaleHeartbeat,
            },
            map_refresh: plan.map_refresh,
            ingest: IngestPlacement::Task,
            limits: HttpLimits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(30),
            },
            max_connections: 10_000,
            map_page: MapPage::default(),
        },
        stop.clone(),
    );
    durable::run(
        DurableContext {
            stream: NetStream {
                servers: servers.clone(),
                consumer: plan.name.to_owned(),
                block_ms: 500,
                ack_on_read: false,
            },
            store: NetStore { servers },
            clock,
            metrics: plan.metrics.clone(),
            readiness,
            core: plan.durable.clone(),
            grace: Duration::from_secs(5),
        },
        stop,
    )
    .await;
    Ok(())
}
