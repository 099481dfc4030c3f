//! The in-memory Redis and Postgres of the network layer, served on their own turmoil hosts.
//!
//! A request travels as its id (8 bytes) over simulated TCP; the server host takes the body
//! from the exchange table, executes it against the in-memory stream ([`MemStream`]) or
//! store ([`MemStore`]), files the answer and sends the id back. So a partition, a held link
//! or a crash decides whether a request reaches the server and whether its answer reaches
//! the client, exactly as on a real network (an ack can take effect and its answer be lost),
//! without a serialization format for the core's types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use turmoil::net::{TcpListener, TcpStream};

use processor_core::durable::{ClaimResult, DeadLetter, ReadFrom, WriteRow};
use processor_core::stream::{EntryId, StreamEntry};

use processor_shell::instance::Stage;

use super::live_server::{self, LiveRequest, LiveResponse, LiveTables};
use crate::store::{MemStore, PositionKey};
use crate::stream::{Delivery, MemStream};
use crate::trace::{fingerprint, Trace};

pub const REDIS_PORT: u16 = 6379;
pub const POSTGRES_PORT: u16 = 5432;

/// A request body, filed under its id.
#[derive(Debug, Clone)]
pub enum Request {
    Read {
        consumer: String,
        from: ReadFrom,
        count: usize,
        block_ms: u64,
    },
    Claim {
        consumer: String,
        cursor: EntryId,
        min_idle_ms: u64,
        count: usize,
    },
    Ack(Vec<EntryId>),
    /// The durable consumer leaves the group unless it holds pending entries.
    Leave {
        consumer: String,
    },
    DeadLetter(Vec<DeadLetter>),
    Write(Vec<WriteRow>),
    Live(LiveRequest),
    /// A gateway's XADDs of one packet, each payload with the key it decodes to.
    Append(Vec<(Bytes, Option<PositionKey>)>),
}

#[derive(Debug, Clone)]
pub enum Response {
    Read(Vec<StreamEntry>),
    Claim(ClaimResult),
    Done,
    Written(u64),
    Live(LiveResponse),
    /// Whether the consumer was removed.
    Left(bool),
}

/// What the observer found wrong while serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetViolation {
    pub at_ms: u64,
    pub what: String,
}

/// The state both server hosts serve, and what the observer records.
#[derive(Default)]
pub struct State {
    pub stream: MemStream,
    pub store: MemStore,
    pub dead_letters: Vec<DeadLetter>,
    /// Entry id to the key its payload decodes to (`None`: undecodable).
    pub keys: BTreeMap<EntryId, Option<PositionKey>>,
    pub violations: Vec<NetViolation>,
    /// The broadcast groups, heartbeats and events tables of the live path.
    pub live: LiveTables,
    /// Shutdown stages instances went through: (server time, instance, stage).
    pub stages: Vec<(u64, String, Stage)>,
    /// Durable consumers that left the group: (server time, consumer, removed).
    pub departures: Vec<(u64, String, bool)>,
    /// Per instance, the entries whose broadcast read answer reached it (a read whose answer
    /// a partition lost is gone for that instance: the group reads with NOACK).
    pub broadcast_received: BTreeMap<String, Vec<EntryId>>,
    requests: BTreeMap<u64, Request>,
    responses: BTreeMap<u64, Response>,
    next_request: u64,
    trace: Option<Trace>,
}

/// Shared by every host of one run (turmoil runs them all on one thread).
#[derive(Clone, Default)]
pub struct Servers(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes blocked reads when the gateway appends.
    appended: Notify,
}

impl Servers {
    pub fn new() -> Servers {
        let servers = Servers::default();
        servers.lock().trace = Some(Trace::new(if std::env::var_os("SIM_NET_TRACE").is_some() {
            1_000_000
        } else {
            0
        }));
        servers
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock already failed the run; its state is still usable
        // for the report.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files a request; returns its id.
    pub fn file(&self, request: Request) -> u64 {
        let mut state = self.lock();
        state.next_request += 1;
        let id = state.next_request;
        state.requests.insert(id, request);
        id
    }

    pub fn take_response(&self, id: u64) -> Option<Response> {
        self.lock().responses.remove(&id)
    }

    pub fn forget(&self, id: u64) {
        let mut state = self.lock();
        state.requests.remove(&id);
        state.responses.remove(&id);
    }

    pub fn trace_hash(&self) -> u64 {
        self.lock().trace.as_ref().map_or(0, Trace::hash)
    }

    /// The trace kept as text (with `SIM_NET_TRACE` set), for comparing two runs.
    pub fn trace_text(&self) -> Vec<String> {
        self.lock()
            .trace
            .as_ref()
            .map(Trace::tail)
            .unwrap_or_default()
    }

    /// An entry reaches the stream (from a scenario's stand-in producer directly, or from a
    /// gateway host's request).
    pub fn append(&self, now_ms: u64, payload: Option<Bytes>, key: Option<PositionKey>) {
        let mut state = self.lock();
        let id = state.stream.add(now_ms, payload.clone());
        state.keys.insert(id, key);
        let print = payload.as_deref().map(fingerprint);
        record(&mut state, format_args!("{now_ms} append {id} {print:?}"));
        drop(state);
        self.0.appended.notify_waiters();
    }
}

impl Servers {
    /// Records a line of the run (a fault, a change to the tables) in the trace.
    pub fn note(&self, args: std::fmt::Arguments<'_>) {
        record(&mut self.lock(), args);
    }

    /// A blocking read, as Redis' BLOCK: `attempt` runs now and after every append until
    /// it says it is done or `block_ms` have passed; its last result is the answer.
    pub(super) async fn block<T>(
        &self,
        block_ms: u64,
        mut attempt: impl FnMut(&mut State, u64) -> (T, bool),
    ) -> T {
        let deadline = now_ms() + block_ms;
        loop {
            let (got, done) = attempt(&mut self.lock(), now_ms());
            let now = now_ms();
            if done || now >= deadline {
                return got;
            }
            let _ = tokio::time::timeout(
                Duration::from_millis(deadline - now),
                self.0.appended.notified(),
            )
            .await;
        }
    }
}

pub(super) fn record(state: &mut State, args: std::fmt::Arguments<'_>) {
    if let Some(trace) = state.trace.as_mut() {
        trace.record(args);
    }
}

pub(super) fn now_ms() -> u64 {
    turmoil::since_epoch().map_or(0, |d| d.as_millis() as u64)
}

/// Serves one server host on `port` until the host is crashed.
pub async fn serve(servers: Servers, port: u16) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(serve_connection(servers.clone(), socket));
    }
}

async fn serve_connection(servers: Servers, mut socket: TcpStream) {
    loop {
        let Ok(id) = socket.read_u64().await else {
            return;
        };
        let Some(request) = servers.lock().requests.remove(&id) else {
            return;
        };
        let response = execute(&servers, request).await;
        servers.lock().responses.insert(id, response);
        if socket.write_u64(id).await.is_err() {
            return;
        }
    }
}

async fn execute(servers: &Servers, request: Request) -> Response {
    match request {
        Request::Read {
            consumer,
            from,
            count,
            block_ms,
        } => {
            check_not_departed(&mut servers.lock(), &consumer, "read");
            let got = servers
                .block(block_ms, |state, now| {
                    let got = match from {
                        ReadFrom::New => state.stream.read_new(&consumer, count, now),
                        ReadFrom::Pending { after } => {
                            state.stream.read_pending(&consumer, after, count, now)
                        }
                    };
                    let ids: Vec<String> = got.iter().map(|d| d.id.to_string()).collect();
                    record(state, format_args!("{now} read {consumer} {ids:?}"));
                    // A read of pending entries never blocks, nor one that found something.
                    let done = !got.is_empty() || !matches!(from, ReadFrom::New);
                    (got, done)
                })
                .await;
            Response::Read(got.into_iter().map(Delivery::into_entry).collect())
        }
        Request::Claim {
            consumer,
            cursor,
            min_idle_ms,
            count,
        } => {
            let mut state = servers.lock();
            let now = now_ms();
            check_not_departed(&mut state, &consumer, "claim");
            let claim = state
                .stream
                .autoclaim(&consumer, min_idle_ms, cursor, count, now);
            let ids: Vec<String> = claim.claimed.iter().map(|d| d.id.to_string()).collect();
            record(&mut state, format_args!("{now} claim {consumer} {ids:?}"));
            Response::Claim(claim.into_result())
        }
        Request::Ack(ids) => {
            let mut state = servers.lock();
            let now = now_ms();
            check_settled(&mut state, &ids, now);
            state.stream.ack(&ids);
            record(&mut state, format_args!("{now} ack {ids:?}"));
            Response::Done
        }
        Request::Leave { consumer } => {
            let mut state = servers.lock();
            let now = now_ms();
            let removed = state.stream.remove_consumer_unless_pending(&consumer);
            record(&mut state, format_args!("{now} leave {consumer} {removed}"));
            state.departures.push((now, consumer, removed));
            Response::Left(removed)
        }
        Request::DeadLetter(entries) => {
            let mut state = servers.lock();
            let now = now_ms();
            let ids: Vec<String> = entries.iter().map(|d| d.source_id.to_string()).collect();
            record(&mut state, format_args!("{now} dead-letter {ids:?}"));
            state.dead_letters.extend(entries);
            Response::Done
        }
        Request::Live(request) => Response::Live(live_server::execute(servers, request).await),
        Request::Append(entries) => {
            let now = now_ms();
            for (payload, key) in entries {
                servers.append(now, Some(payload), key);
            }
            Response::Done
        }
        Request::Write(rows) => {
            let mut state = servers.lock();
            let now = now_ms();
            let written = match state.store.insert(&rows) {
                Ok(inserted) => inserted.iter().filter(|i| **i).count() as u64,
                // The traffic of this layer carries no row the store refuses.
                Err(_) => 0,
            };
            record(
                &mut state,
                format_args!("{now} write {} rows, {written} new", rows.len()),
            );
            Response::Written(written)
        }
    }
}

/// A consumer that left the group reads nothing more: it left once everything was settled.
fn check_not_departed(state: &mut State, consumer: &str, what: &str) {
    if state
        .departures
        .iter()
        .any(|(_, c, removed)| *removed && c == consumer)
    {
        let at_ms = now_ms();
        state.violations.push(NetViolation {
            at_ms,
            what: format!("{consumer} sent a {what} after it left the durable group"),
        });
    }
}

/// Nothing is acked before it is safe: a decodable entry's key is stored, an undecodable
/// one is dead-lettered.
fn check_settled(state: &mut State, ids: &[EntryId], now: u64) {
    let dead: BTreeSet<EntryId> = state.dead_letters.iter().map(|d| d.source_id).collect();
    for id in ids {
        let safe = match state.keys.get(id) {
            Some(Some(key)) => state.store.rows().contains_key(key) || dead.contains(id),
            Some(None) => dead.contains(id),
            None => true,
        };
        if !safe {
            state.violations.push(NetViolation {
                at_ms: now,
                what: format!("{id} acked before it was stored or dead-lettered"),
            });
        }
    }
}
