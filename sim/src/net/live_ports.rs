//! The processor's side of the live path in the network layer: the shell's live ports,
//! implemented by requests to the server hosts over simulated TCP, and the listener
//! WebSocket clients connect to.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use processor_core::live::{HistoryQuery, Visibility};
use processor_core::stream::EntryId;
use processor_core::wire::WirePosition;
use processor_shell::http::Listener;
use processor_shell::live::ports::{BroadcastPort, BroadcastReader, EventMembers, LiveStore};
use processor_shell::postgres::events::{EventDetails, PublicEvent};
use processor_shell::postgres::tracks::TrackPoint;

use super::live_server::{LiveRequest, LiveResponse};
use super::ports::call;
use super::servers::{Request, Response, Servers, POSTGRES_PORT, REDIS_PORT};

async fn ask(
    servers: &Servers,
    host: &str,
    port: u16,
    request: LiveRequest,
    extra_wait: Duration,
) -> Result<LiveResponse, String> {
    match call(servers, host, port, Request::Live(request), extra_wait).await? {
        Response::Live(response) => Ok(response),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

fn unexpected<T>(what: &str, answer: LiveResponse) -> Result<T, String> {
    Err(format!("unexpected answer to {what}: {answer:?}"))
}

/// The events tables and the positions store on the "postgres" host.
#[derive(Clone)]
pub struct NetLiveStore {
    pub servers: Servers,
}

impl NetLiveStore {
    async fn ask(&self, request: LiveRequest) -> Result<LiveResponse, String> {
        ask(
            &self.servers,
            "postgres",
            POSTGRES_PORT,
            request,
            Duration::ZERO,
        )
        .await
    }
}

impl LiveStore for NetLiveStore {
    type Error = String;

    async fn visibility(&self, event: Uuid) -> Result<Visibility, String> {
        match self.ask(LiveRequest::Visibility(event)).await? {
            LiveResponse::Visibility(v) => Ok(v),
            other => unexpected("a visibility look-up", other),
        }
    }

    /// The simulated store answers the newest row per device whatever history is asked:
    /// the simulation's clients do not ask for trails or resumes.
    async fn snapshot(
        &self,
        devices: Vec<String>,
        _history: HistoryQuery,
    ) -> Result<Vec<WirePosition>, String> {
        match self.ask(LiveRequest::Snapshot(devices)).await? {
            LiveResponse::Snapshot(rows) => Ok(rows),
            other => unexpected("a snapshot", other),
        }
    }

    /// Replays are not simulated: the simulation's clients do not ask for them.
    async fn replay_snapshot(
        &self,
        _devices: Vec<String>,
        _at: processor_core::UnixMillis,
        _history: HistoryQuery,
    ) -> Result<Vec<WirePosition>, String> {
        Err("replays are not simulated".to_owned())
    }

    async fn replay_page(
        &self,
        _devices: Vec<String>,
        _after: processor_core::live::ReplayKey,
        _to: processor_core::UnixMillis,
        _limit: usize,
    ) -> Result<Vec<WirePosition>, String> {
        Err("replays are not simulated".to_owned())
    }

    /// Exports are not simulated: the simulation's clients do not ask for them.
    async fn track_page(
        &self,
        _device: String,
        _after: std::time::SystemTime,
        _to: std::time::SystemTime,
        _limit: i64,
    ) -> Result<Vec<TrackPoint>, String> {
        Err("exports are not simulated".to_owned())
    }

    async fn event_devices(&self, _event: uuid::Uuid) -> Result<Vec<String>, String> {
        Err("exports are not simulated".to_owned())
    }

    async fn device_map(&self) -> Result<EventMembers, String> {
        match self.ask(LiveRequest::DeviceMap).await? {
            LiveResponse::DeviceMap(map) => Ok(map),
            other => unexpected("a device map load", other),
        }
    }

    async fn public_events(&self) -> Result<Vec<PublicEvent>, String> {
        match self.ask(LiveRequest::PublicEvents).await? {
            LiveResponse::PublicEvents(events) => Ok(events
                .into_iter()
                .map(|(id, name)| PublicEvent {
                    id,
                    name,
                    starts_at: None,
                    ends_at: None,
                })
                .collect()),
            other => unexpected("the public events", other),
        }
    }

    async fn event_details(&self, event: Uuid) -> Result<Option<EventDetails>, String> {
        match self.ask(LiveRequest::EventDetails(event)).await? {
            // The simulated tables know events and device memberships, not entries.
            LiveResponse::EventDetails(found) => Ok(found.map(|(name, visibility)| EventDetails {
                id: event,
                name,
                visibility: visibility.to_owned(),
                starts_at: None,
                ends_at: None,
                entries: Vec::new(),
                truncated: false,
            })),
            other => unexpected("an event's details", other),
        }
    }
}

/// One instance's broadcast group on the "redis" host.
#[derive(Clone)]
pub struct NetBroadcast {
    pub servers: Servers,
    pub instance: String,
    pub ttl: Duration,
    pub block_ms: u64,
    /// A planted defect: heartbeats after the first are not sent.
    pub stale_heartbeat: bool,
}

impl NetBroadcast {
    async fn ask(
        &self,
        request: LiveRequest,
        extra_wait: Duration,
    ) -> Result<LiveResponse, String> {
        ask(&self.servers, "redis", REDIS_PORT, request, extra_wait).await
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }
}

pub struct NetBroadcastReader(NetBroadcast);

impl BroadcastPort for NetBroadcast {
    type Error = String;
    type Reader = NetBroadcastReader;

    async fn open(&self) -> Result<NetBroadcastReader, String> {
        let request = LiveRequest::OpenGroup {
            instance: self.instance.clone(),
            ttl_ms: self.ttl_ms(),
        };
        self.ask(request, Duration::ZERO).await?;
        Ok(NetBroadcastReader(self.clone()))
    }

    async fn heartbeat(&self) -> Result<(), String> {
        if self.stale_heartbeat {
            return Ok(());
        }
        let request = LiveRequest::Heartbeat {
            instance: self.instance.clone(),
            ttl_ms: self.ttl_ms(),
        };
        self.ask(request, Duration::ZERO).await.map(|_| ())
    }

    async fn remove_dead_groups(&self) -> Result<Vec<String>, String> {
        let request = LiveRequest::RemoveDeadGroups {
            instance: self.instance.clone(),
        };
        match self.ask(request, Duration::ZERO).await? {
            LiveResponse::Removed(names) => Ok(names),
            other => unexpected("a dead group sweep", other),
        }
    }

    async fn destroy(&self) -> Result<(), String> {
        let request = LiveRequest::DestroyGroup {
            instance: self.instance.clone(),
        };
        self.ask(request, Duration::ZERO).await.map(|_| ())
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl BroadcastReader for NetBroadcastReader {
    type Error = String;

    async fn read(&mut self, count: usize) -> Result<Vec<(EntryId, Option<Bytes>)>, String> {
        let port = &self.0;
        let request = LiveRequest::ReadGroup {
            instance: port.instance.clone(),
            count,
            block_ms: port.block_ms,
        };
        let wait = Duration::from_millis(port.block_ms);
        match port.ask(request, wait).await? {
            LiveResponse::Entries(entries) => {
                port.servers
                    .lock()
                    .broadcast_received
                    .entry(port.instance.clone())
                    .or_default()
                    .extend(entries.iter().map(|(id, _)| *id));
                Ok(entries)
            }
            LiveResponse::NoGroup => Err("NOGROUP: the broadcast group is gone".to_owned()),
            other => unexpected("a broadcast read", other),
        }
    }
}

/// A turmoil listener, for the WebSocket server.
pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    type Io = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<turmoil::net::TcpStream> {
        self.0.accept().await.map(|(stream, _)| stream)
    }
}
