//! A WebSocket client host of the network layer: real WebSocket frames (tokio-tungstenite)
//! over simulated TCP to a processor's `/live`. It subscribes, reads fast or slowly, asks
//! again for a topic the server could not serve yet, and reconnects (to its home instance or
//! the other one) when its connection dies. Every frame is judged as it arrives by the
//! live model's [`ClientView`]; what needs the whole run is judged by the scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use turmoil::net::TcpStream;

use crate::live::checker::not_faulty;
use crate::rng::SimRng;
use crate::trace::{fingerprint, Trace};
use processor_core::live::client_view::{Asked, ClientView, Reading};

use super::servers::now_ms;

pub const WS_PORT: u16 = 8080;
/// Silence after which a client takes its connection for dead: the server pings every
/// second, so three seconds without a frame means the instance is gone or cut off.
const SILENCE: Duration = Duration::from_secs(3);
const RECONNECT: Duration = Duration::from_millis(200);
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// What the gateway published, as the judges need it.
#[derive(Debug, Default)]
pub struct Published {
    pub faulty: BTreeSet<(String, i64)>,
    /// (device, ts) to when it was first appended (simulated ms).
    pub appended_at: BTreeMap<(String, i64), u64>,
    /// Per device, the newest non-faulty fix time.
    pub newest: BTreeMap<String, i64>,
    /// Fixes newer than every sound fix of their device before them, with when they were
    /// appended: the live path must accept and deliver each of them.
    pub fresh: Vec<(String, i64, u64)>,
}

/// One connection of a client, from open to close.
#[derive(Debug)]
pub struct Session {
    pub instance: &'static str,
    pub view: ClientView,
    pub open: bool,
    /// When it ended (simulated ms), if it did.
    pub closed_at: Option<u64>,
    /// The code of the server's close frame, if one came.
    pub close_code: Option<u16>,
    /// Per topic, since when the client has had its snapshot (and so gets it live).
    pub live_since: BTreeMap<String, u64>,
    /// Every (topic, device, ts) it got, in a snapshot or live.
    pub got: BTreeSet<(String, String, i64)>,
}

/// A position frame read: when its fix was appended, and how long it took to arrive.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub appended_at: u64,
    pub latency_ms: u64,
    pub instance: &'static str,
}

#[derive(Debug, Default)]
pub struct ClientLog {
    pub sessions: Vec<Session>,
    pub violations: Vec<String>,
    pub arrivals: Vec<Arrival>,
    /// Errors that said "try again later": (when, instance, topic).
    pub retried: Vec<(u64, &'static str, String)>,
}

/// Everything the clients saw, shared with the scenario (turmoil runs every host on one
/// thread).
#[derive(Clone)]
pub struct Observed(Arc<Mutex<ObservedState>>);

pub struct ObservedState {
    pub clients: BTreeMap<String, ClientLog>,
    pub published: Published,
    /// Every frame every client read, in order, for the replay check.
    pub trace: Trace,
    /// The gateway has appended all its traffic.
    pub traffic_done: bool,
    /// The scenario asks the gateway for its last round of fixes.
    pub final_round: bool,
}

impl Default for Observed {
    fn default() -> Observed {
        Observed(Arc::new(Mutex::new(ObservedState {
            clients: BTreeMap::new(),
            published: Published::default(),
            trace: Trace::new(0),
            traffic_done: false,
            final_round: false,
        })))
    }
}

impl Observed {
    pub fn lock(&self) -> MutexGuard<'_, ObservedState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub name: String,
    pub home: &'static str,
    pub other: &'static str,
    /// Sleeps between frames, so its socket fills and the server conflates.
    pub slow: bool,
    pub topics: Vec<String>,
    /// Topics this client must never be served (not public, not granted).
    pub forbidden: Vec<String>,
    pub token: Option<String>,
    pub seed: u64,
}

/// A client host: connects, and reconnects, for the whole run.
pub async fn run(plan: ClientPlan, observed: Observed) -> turmoil::Result {
    let mut rng = SimRng::new(plan.seed);
    let mut attempt = 0u64;
    loop {
        let host = if attempt % 2 == 0 {
            plan.home
        } else {
            plan.other
        };
        if let Err(error) = session(&plan, host, &mut rng, &observed).await {
            tracing::debug!(client = %plan.name, %error, "session ended");
        }
        if let Some(s) = observed
            .lock()
            .clients
            .entry(plan.name.clone())
            .or_default()
            .sessions
            .last_mut()
        {
            s.open = false;
            s.closed_at = Some(now_ms());
        }
        attempt += 1;
        tokio::time::sleep(RECONNECT).await;
    }
}

fn subscribe(topic: &str) -> Message {
    Message::text(format!(r#"{{"type":"subscribe","topic":"{topic}"}}"#))
}

async fn session(
    plan: &ClientPlan,
    host: &'static str,
    rng: &mut SimRng,
    observed: &Observed,
) -> Result<(), String> {
    // A crashed host never answers: give up on it as on a silent connection.
    let tcp = tokio::time::timeout(SILENCE, TcpStream::connect((host, WS_PORT)))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut request = format!("ws://{host}:{WS_PORT}/live")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(token) = &plan.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    let (mut ws, _) = tokio::time::timeout(SILENCE, tokio_tungstenite::client_async(request, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    let mut view = ClientView::new(Reading::Buffered);
    for topic in plan.topics.iter().chain(&plan.forbidden) {
        view.requested(topic, Asked::Newest);
    }
    observed
        .lock()
        .clients
        .entry(plan.name.clone())
        .or_default()
        .sessions
        .push(Session {
            instance: host,
            view,
            open: true,
            closed_at: None,
            close_code: None,
            live_since: BTreeMap::new(),
            got: BTreeSet::new(),
        });
    for topic in plan.topics.iter().chain(&plan.forbidden) {
        ws.send(subscribe(topic)).await.map_err(|e| e.to_string())?;
    }
    let mut retry: Vec<(u64, String)> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(SILENCE, ws.next()).await {
            Err(_) => return Err("silent for 3 s".to_owned()),
            Ok(None) => return Err("closed".to_owned()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => {
                if let Some(topic) = judge(plan, host, text.as_bytes(), observed) {
                    retry.push((now_ms() + RESUBSCRIBE.as_millis() as u64, topic));
                }
            }
            Message::Close(frame) => {
                if let Some(s) = observed
                    .lock()
                    .clients
                    .get_mut(&plan.name)
                    .and_then(|log| log.sessions.last_mut())
                {
                    s.close_code = frame.map(|f| u16::from(f.code));
                }
                return Err("closed by the server".to_owned());
            }
            _ => {}
        }
        let now = now_ms();
        let (due, later): (Vec<_>, Vec<_>) = retry.drain(..).partition(|(t, _)| *t <= now);
        retry = later;
        for (_, topic) in due {
            if let Some(s) = observed
                .lock()
                .clients
                .get_mut(&plan.name)
                .and_then(|log| log.sessions.last_mut())
            {
                s.view.requested(&topic, Asked::Newest);
            }
            ws.send(subscribe(&topic))
                .await
                .map_err(|e| e.to_string())?;
        }
        if plan.slow {
            tokio::time::sleep(Duration::from_millis(rng.range(20, 300))).await;
        }
    }
}

/// Judges one text frame; returns a topic to ask for again (the server could not serve it).
fn judge(
    plan: &ClientPlan,
    host: &'static str,
    frame: &[u8],
    observed: &Observed,
) -> Option<String> {
    let mut state = observed.lock();
    let state = &mut *state;
    let log = state.clients.entry(plan.name.clone()).or_default();
    let session = log.sessions.last_mut()?;
    state.trace.record(format_args!(
        "{} {} {host} {:x}",
        now_ms(),
        plan.name,
        fingerprint(frame)
    ));
    let faulty = &state.published.faulty;
    let broken = session
        .view
        .receive(frame, &|device, ts, _| not_faulty(faulty, device, ts));
    for (kind, detail) in broken {
        log.violations.push(format!(
            "{} at {} ms on {host}: {kind:?}: {detail}",
            plan.name,
            now_ms()
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(frame).ok()?;
    let topic = value["topic"].as_str().unwrap_or_default().to_owned();
    let now = now_ms();
    match value["type"].as_str()? {
        "snapshot" => {
            let session = log.sessions.last_mut()?;
            for p in value["positions"].as_array().into_iter().flatten() {
                if let (Some(device), Some(ts)) = (p["deviceId"].as_str(), p["ts"].as_i64()) {
                    session.got.insert((topic.clone(), device.to_owned(), ts));
                }
            }
            if session.view.live_topics().contains(&topic) {
                session.live_since.entry(topic).or_insert(now);
            }
            None
        }
        "unsubscribed" => {
            log.sessions.last_mut()?.live_since.remove(&topic);
            None
        }
        "position" => {
            let device = value["deviceId"].as_str()?.to_owned();
            let ts = value["ts"].as_i64()?;
            log.sessions
                .last_mut()?
                .got
                .insert((topic, device.clone(), ts));
            if let Some(at) = state.published.appended_at.get(&(device, ts)) {
                log.arrivals.push(Arrival {
                    appended_at: *at,
                    latency_ms: now_ms().saturating_sub(*at),
                    instance: host,
                });
            }
            None
        }
        "error" => {
            let code = value["code"].as_str().unwrap_or_default();
            let refused = plan.forbidden.contains(&topic);
            match (code, refused) {
                ("forbidden", true) => None,
                // The server could not look the topic up or load its snapshot: ask again later.
                ("limit_exceeded", _) => {
                    log.retried.push((now, host, topic.clone()));
                    Some(topic)
                }
                _ => {
                    log.violations.push(format!(
                        "{} on {host}: unexpected error for {topic}: {value}",
                        plan.name
                    ));
                    None
                }
            }
        }
        _ => None,
    }
}
