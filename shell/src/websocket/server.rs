//! Accepting clients: HTTP/1.1 on `LIVE_WS_ADDR`. `GET /live` is upgraded to a WebSocket
//! after authentication; `GET /` and its assets are the live map page, `GET /events` the
//! public events it offers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_tungstenite::tungstenite::protocol::WebSocketConfig;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};

use processor_core::live::ConnId;

use crate::clock::Clock;
use crate::hub::ports::LiveStore;
use crate::hub::HubInput;
use crate::live::auth::Authenticator;
use crate::map_page;
use crate::metrics::Metrics;

use super::Listener;

/// A message over this size, all its frames together, closes the connection with 1009
/// (contract section 5); smaller ones over `LIVE_WS_MAX_MESSAGE_BYTES` get `bad_request`.
pub const HARD_MESSAGE_LIMIT: usize = 64 * 1024;
/// tungstenite's default read buffer is 128 KiB per connection, allocated up front; client
/// messages are a few hundred bytes.
const READ_BUFFER_BYTES: usize = 4 * 1024;

pub struct WsContext<S: LiveStore, C: Clock> {
    pub auth: Authenticator,
    pub hub: mpsc::UnboundedSender<HubInput>,
    pub metrics: Arc<Metrics>,
    pub store: S,
    pub clock: C,
    next_conn: AtomicU64,
}

impl<S: LiveStore, C: Clock> WsContext<S, C> {
    pub fn new(
        auth: Authenticator,
        hub: mpsc::UnboundedSender<HubInput>,
        metrics: Arc<Metrics>,
        store: S,
        clock: C,
    ) -> WsContext<S, C> {
        WsContext {
            auth,
            hub,
            metrics,
            store,
            clock,
            next_conn: AtomicU64::new(1),
        }
    }
}

/// Accepts clients until `stop` turns true.
pub async fn serve<L: Listener, S: LiveStore, C: Clock>(
    mut listener: L,
    ctx: Arc<WsContext<S, C>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "websocket server: accept failed");
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(respond(req, &ctx).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%error, "websocket server: connection ended with an error");
            }
        });
    }
}

async fn respond<S: LiveStore, C: Clock>(
    req: Request<Incoming>,
    ctx: &Arc<WsContext<S, C>>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/live" {
        return upgrade(req, ctx);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    if req.uri().path() == "/events" {
        return events(ctx).await;
    }
    match map_page::asset(req.uri().path()) {
        Some(asset) => page(asset),
        None => text(
            StatusCode::NOT_FOUND,
            "not found; the WebSocket endpoint is /live, the map page /\n",
        ),
    }
}

fn upgrade<S: LiveStore, C: Clock>(
    mut req: Request<Incoming>,
    ctx: &Arc<WsContext<S, C>>,
) -> Response<Full<Bytes>> {
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is expected here\n",
        );
    }
    let now_s = u64::try_from(ctx.clock.now().as_i64() / 1_000).unwrap_or(0);
    let principal = match ctx.auth.authenticate(req.headers(), req.uri(), now_s) {
        Ok(p) => p,
        Err(error) => {
            tracing::debug!(%error, "websocket client refused");
            return text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(HARD_MESSAGE_LIMIT))
        .max_frame_size(Some(HARD_MESSAGE_LIMIT));
    let (response, websocket) = match hyper_tungstenite::upgrade(&mut req, Some(config)) {
        Ok(upgrade) => upgrade,
        Err(_) => return text(StatusCode::BAD_REQUEST, "invalid WebSocket upgrade\n"),
    };
    let conn = ConnId(ctx.next_conn.fetch_add(1, Ordering::Relaxed));
    let (hub, metrics, clock) = (ctx.hub.clone(), ctx.metrics.clone(), ctx.clock.clone());
    tokio::spawn(async move {
        match websocket.await {
            Ok(ws) => super::connection::run(ws, conn, principal, hub, metrics, clock).await,
            Err(error) => tracing::debug!(%error, "websocket upgrade did not complete"),
        }
    });
    response
}

/// `[{"id": uuid, "name": text}]`, the public events by name.
async fn events<S: LiveStore, C: Clock>(ctx: &Arc<WsContext<S, C>>) -> Response<Full<Bytes>> {
    let events = match ctx.store.public_events().await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "cannot list the public events");
            return text(StatusCode::SERVICE_UNAVAILABLE, "events unavailable\n");
        }
    };
    let list: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| serde_json::json!({ "id": e.id.to_string(), "name": e.name }))
        .collect();
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::Value::Array(list).to_string(),
    )));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(asset: map_page::Asset) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page loads nothing but its own assets and talks to nothing but this origin.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}
