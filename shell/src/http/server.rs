//! Accepting clients: HTTP/1.1 on `LIVE_WS_ADDR`. `GET /live` is upgraded to a WebSocket
//! after authentication; `GET /` and its assets are the live map page, `GET /events` the
//! public events it offers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio::sync::{oneshot, watch};

use processor_core::live::{ConnId, Input};
use processor_core::UnixMillis;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::edge::accept::{next_connection, AcceptBackoff};
use crate::edge::http::{self, FirstRequest, HttpLimits};
use crate::edge::slots::ConnectionSlots;
use crate::live::ports::LiveStore;
use crate::live::socket::Socket;
use crate::live::{reader, ShardInput, Shards};
use crate::map_page::{Asset, MapPage};
use crate::metrics::Metrics;

use super::event_route::{self, rfc3339, DetailsCache};
use super::tracks_route::{self, whole, Exports, ResponseBody};
use super::Listener;

pub struct WsContext<S: LiveStore, C: Clock> {
    pub auth: Authenticator,
    pub shards: Shards,
    pub limits: HttpLimits,
    pub slots: ConnectionSlots,
    pub metrics: Arc<Metrics>,
    pub store: S,
    pub clock: C,
    next_conn: AtomicU64,
    /// The last `GET /events` body and when it was read: requests within a second share
    /// one query, so that no client can turn requests into Postgres load.
    events_cache: tokio::sync::Mutex<Option<(UnixMillis, Bytes)>>,
    /// `GET /events/<uuid>`'s recent answers, per event.
    details_cache: DetailsCache,
    /// The map page, its tile layer (if any) written in at start-up.
    map_page: MapPage,
    /// Exports running.
    exports: Exports,
}

/// How long a `GET /events` body is served again.
const EVENTS_CACHE_MS: i64 = 1_000;

impl<S: LiveStore, C: Clock> WsContext<S, C> {
    pub fn new(
        auth: Authenticator,
        shards: Shards,
        limits: HttpLimits,
        slots: ConnectionSlots,
        metrics: Arc<Metrics>,
        store: S,
        clock: C,
    ) -> WsContext<S, C> {
        WsContext {
            auth,
            shards,
            limits,
            slots,
            metrics,
            store,
            clock,
            next_conn: AtomicU64::new(1),
            events_cache: tokio::sync::Mutex::new(None),
            details_cache: DetailsCache::default(),
            map_page: MapPage::default(),
            exports: Exports::default(),
        }
    }

    /// Serves `map_page` at `/` instead of the page without tiles.
    pub fn with_map_page(mut self, map_page: MapPage) -> WsContext<S, C> {
        self.map_page = map_page;
        self
    }
}

/// Accepts clients until `stop` turns true.
pub async fn serve<L: Listener, S: LiveStore, C: Clock>(
    mut listener: L,
    ctx: Arc<WsContext<S, C>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = AcceptBackoff::new("LIVE_WS_ADDR", ctx.metrics.live_accept_errors.clone());
    loop {
        let Some(stream) = next_connection(&mut listener, &mut backoff, &mut stop).await else {
            return;
        };
        let ctx = ctx.clone();
        let limits = ctx.limits;
        tokio::spawn(async move {
            let first = FirstRequest::default();
            let service = service_fn({
                let first = first.clone();
                move |req| {
                    first.arrived();
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(respond(req, &ctx).await) }
                }
            });
            if let Err(error) = http::serve(stream, service, first, limits, true).await {
                tracing::debug!(%error, "websocket server: connection ended with an error");
            }
        });
    }
}

async fn respond<S: LiveStore, C: Clock>(
    req: Request<Incoming>,
    ctx: &Arc<WsContext<S, C>>,
) -> Response<ResponseBody> {
    let export = req
        .uri()
        .path()
        .strip_prefix("/events/")
        .and_then(|rest| rest.strip_suffix("/tracks"))
        .map(str::to_owned);
    match export {
        Some(id) if req.method() == Method::GET || req.method() == Method::HEAD => {
            let (parts, _) = req.into_parts();
            tracks_route::respond(
                &parts,
                &id,
                &ctx.auth,
                &ctx.store,
                &ctx.clock,
                &ctx.details_cache,
                &ctx.exports,
            )
            .await
        }
        _ => whole(respond_whole(req, ctx).await),
    }
}

async fn respond_whole<S: LiveStore, C: Clock>(
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
    if let Some(id) = req.uri().path().strip_prefix("/events/") {
        let id = id.to_owned();
        let (parts, _) = req.into_parts();
        return event_route::respond(
            &parts,
            &id,
            &ctx.auth,
            &ctx.store,
            &ctx.clock,
            &ctx.details_cache,
        )
        .await;
    }
    match ctx.map_page.asset(req.uri().path()) {
        Some(asset) => page(asset, ctx.map_page.csp()),
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
    if req.method() != Method::GET {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is expected here\n",
        );
    }
    let headers = req.headers();
    if headers.get("sec-websocket-version").map(|v| v.as_bytes()) != Some(b"13") {
        return text(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Version must be 13\n",
        );
    }
    let Some(key) = headers
        .get("sec-websocket-key")
        .filter(|key| is_websocket_key(key.as_bytes()))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be the base64 of 16 bytes\n",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let now_s = u64::try_from(ctx.clock.now().as_i64() / 1_000).unwrap_or(0);
    let (principal, expires_at) = match ctx.auth.authenticate_until(req.headers(), req.uri(), now_s)
    {
        Ok(granted) => granted,
        Err(error) => {
            tracing::debug!(%error, "websocket client refused");
            let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(error.www_authenticate()),
            );
            return response;
        }
    };
    let Some(slot) = ctx.slots.take() else {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections; try again later\n",
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let conn = ConnId(ctx.next_conn.fetch_add(1, Ordering::Relaxed));
    let shard = ctx.shards.of(conn).clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade did not complete");
                return;
            }
        };
        let socket = Arc::new(Socket::new(upgraded, slot));
        // The reader starts once its shard knows the connection, so that no frame of it
        // arrives before `Connected`.
        let (go, gate) = oneshot::channel::<()>();
        let reader = tokio::spawn({
            let (socket, shard) = (socket.clone(), shard.clone());
            async move {
                if gate.await.is_ok() {
                    reader::run(socket, conn, Bytes::new(), shard).await;
                }
            }
        });
        let attach = ShardInput::Attach {
            conn,
            socket,
            reader: reader.abort_handle(),
        };
        let connected = ShardInput::Core(Input::Connected {
            conn,
            principal,
            expires_at,
        });
        if shard.send(attach).is_ok() && shard.send(connected).is_ok() {
            let _ = go.send(());
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}

/// RFC 6455, section 4.1: the base64 of 16 bytes is 22 characters and `==`, the last
/// character carrying 2 bits of data and 4 zero bits.
fn is_websocket_key(key: &[u8]) -> bool {
    let base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..22].iter().all(base64)
        && b"AQgw".contains(&key[21])
        && &key[22..] == b"=="
}

/// `[{"id": uuid, "name": text, "starts_at", "ends_at"}]`, the public events by name.
async fn events<S: LiveStore, C: Clock>(ctx: &Arc<WsContext<S, C>>) -> Response<Full<Bytes>> {
    // One query at a time; the others wait for it and share its answer.
    let mut cache = ctx.events_cache.lock().await;
    let now = ctx.clock.now();
    let body = match cache.as_ref() {
        Some((at, body)) if now.since(*at) < EVENTS_CACHE_MS && now >= *at => body.clone(),
        _ => {
            let events = match ctx.store.public_events().await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the public events");
                    return text(StatusCode::SERVICE_UNAVAILABLE, "events unavailable\n");
                }
            };
            let list: Vec<serde_json::Value> = events
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.id.to_string(), "name": e.name,
                        "starts_at": rfc3339(e.starts_at), "ends_at": rfc3339(e.ends_at),
                    })
                })
                .collect();
            let body = Bytes::from(serde_json::Value::Array(list).to_string());
            *cache = Some((now, body.clone()));
            body
        }
    };
    drop(cache);
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn page(asset: Asset, csp: HeaderValue) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(asset.body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page loads nothing but its own assets (and the configured tiles' images) and talks
    // to nothing but this origin.
    headers.insert("content-security-policy", csp);
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
