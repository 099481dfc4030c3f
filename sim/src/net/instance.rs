//! A whole processor instance as a turmoil host: the shell's composition root
//! ([`processor_shell::instance::run`], as the binary runs it) over the network ports of
//! this layer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use processor_core::durable::DurableConfig;
use processor_core::live::LiveConfig;
use processor_shell::auth::Authenticator;
use processor_shell::edge::http::HttpLimits;
use processor_shell::instance::{self, InstancePorts, InstanceSettings};
use processor_shell::live::IngestPlacement;
use processor_shell::map_page::MapPage;
use processor_shell::metrics::Metrics;
use processor_shell::readiness::Readiness;

use super::live_ports::{NetBroadcast, NetLiveStore, SimListener};
use super::ports::{NetStore, NetStream, SimClock};
use super::servers::{now_ms, Servers};
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
    /// Turns true when the scenario asks the instance to stop; its sender must outlive the
    /// run (a dropped sender is a stop).
    pub stop: watch::Receiver<bool>,
}

fn authenticator() -> Result<Authenticator, String> {
    Authenticator::hs256(TOKEN_SECRET, true).map_err(|e| e.to_string())
}

/// Runs until `plan.stop` turns true (then stops in the contract's order, each stage noted
/// on the servers' record) or the host is crashed.
pub async fn run(servers: Servers, plan: InstancePlan) -> turmoil::Result {
    let clock = SimClock {
        skew_ms: plan.skew_ms,
    };
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", WS_PORT)).await?;
    let ports = InstancePorts {
        durable_stream: NetStream {
            servers: servers.clone(),
            consumer: plan.name.to_owned(),
            block_ms: 500,
            ack_on_read: false,
        },
        durable_store: NetStore {
            servers: servers.clone(),
        },
        live_store: NetLiveStore {
            servers: servers.clone(),
        },
        listener: SimListener(listener),
        broadcast: NetBroadcast {
            servers: servers.clone(),
            instance: plan.name.to_owned(),
            ttl: plan.group_ttl,
            block_ms: 500,
            stale_heartbeat: plan.defect == NetLiveDefect::StaleHeartbeat,
        },
        clock,
    };
    let settings = InstanceSettings {
        live: plan.live.clone(),
        durable: plan.durable.clone(),
        // Two shards, so that a client's view is judged across a shard boundary as well.
        shards: 2,
        map_refresh: plan.map_refresh,
        ingest: IngestPlacement::Task,
        limits: HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        },
        max_connections: 10_000,
        map_page: MapPage::default(),
        auth: authenticator()?,
        grace: Duration::from_secs(5),
        metrics: plan.metrics.clone(),
        readiness: Arc::new(Readiness::default()),
    };
    let name = plan.name;
    instance::run(ports, settings, Vec::new(), plan.stop.clone(), |stage| {
        let now = now_ms();
        servers.note(format_args!("{now} {name} stage {stage:?}"));
        servers.lock().stages.push((now, name.to_owned(), stage));
    })
    .await;
    Ok(())
}
