//! `GET /events/<uuid>` (contract section 5.2): one event with its entries, their names,
//! bib numbers and devices, so that a front end can label what it draws.
//!
//! Authorized exactly as a subscription to `event:<uuid>`: the same authenticator turns the
//! request into a principal, the core's [`Principal::may_subscribe`] decides. An event the
//! principal may not see and one that does not exist get the same 404, byte for byte.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use processor_core::live::Visibility;
use processor_core::ttl_cache::TtlCache;

use crate::auth::Authenticator;
use crate::clock::{Clock, MonoClock};
use crate::live::ports::LiveStore;
use crate::postgres::events::EventDetails;

/// How long one event's details are served again: spectators opening the map at the start
/// of a race share one query.
const CACHE_MS: u64 = 1_000;
/// Events cached at most; beyond, the one read longest ago goes.
const CACHE_CAPACITY: usize = 1_000;

const NOT_FOUND: &str =
    r#"{"error":"not_found","message":"no such event, or not visible with this token"}"#;

/// Event details read recently, `None` for "no such event". One look-up at a time goes to
/// the store: the lock is held across it, which bounds what requests cost Postgres.
pub struct DetailsCache {
    entries: tokio::sync::Mutex<TtlCache<Uuid, Option<Arc<EventDetails>>>>,
    mono: MonoClock,
}

impl Default for DetailsCache {
    fn default() -> DetailsCache {
        DetailsCache {
            entries: tokio::sync::Mutex::new(TtlCache::new(CACHE_MS, CACHE_CAPACITY)),
            mono: MonoClock::start(),
        }
    }
}

pub async fn respond<S: LiveStore, C: Clock>(
    parts: &Parts,
    id: &str,
    auth: &Authenticator,
    store: &S,
    clock: &C,
    cache: &DetailsCache,
) -> Response<Full<Bytes>> {
    match authorized_event(parts, id, auth, store, clock, cache).await {
        Ok(details) => json_response(StatusCode::OK, event_json(&details).to_string()),
        Err(refused) => refused,
    }
}

/// The event `id` names, when the request's token (or its absence) may see it, as a
/// subscription to `event:<id>` would be allowed; else the response to give: 401 for a
/// bad token, the one 404 for an event that is not allowed or does not exist (or a
/// malformed id), 503 when the look-up failed.
pub async fn authorized_event<S: LiveStore, C: Clock>(
    parts: &Parts,
    id: &str,
    auth: &Authenticator,
    store: &S,
    clock: &C,
    cache: &DetailsCache,
) -> Result<Arc<EventDetails>, Response<Full<Bytes>>> {
    let now = clock.now();
    let now_s = u64::try_from(now.as_i64() / 1_000).unwrap_or(0);
    let principal = match auth.authenticate(&parts.headers, &parts.uri, now_s) {
        Ok(principal) => principal,
        Err(error) => {
            let body = json!({"error": "unauthorized", "message": error.to_string()});
            let mut response = json_response(StatusCode::UNAUTHORIZED, body.to_string());
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(error.www_authenticate()),
            );
            return Err(response);
        }
    };
    // A malformed id names no event: the same 404 as any other.
    let Ok(event) = Uuid::try_parse(id) else {
        return Err(not_found());
    };
    let details = match cached(event, store, cache).await {
        Ok(details) => details,
        Err(error) => {
            tracing::warn!(%error, %event, "cannot read the event's details");
            let body =
                json!({"error": "unavailable", "message": "event details unavailable; try again"});
            return Err(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                body.to_string(),
            ));
        }
    };
    let visibility = Visibility::from_column(details.as_ref().map(|d| d.visibility.as_str()));
    match details {
        Some(details) if principal.may_subscribe(event, visibility) => Ok(details),
        _ => Err(not_found()),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    json_response(StatusCode::NOT_FOUND, NOT_FOUND.to_owned())
}

async fn cached<S: LiveStore>(
    event: Uuid,
    store: &S,
    cache: &DetailsCache,
) -> Result<Option<Arc<EventDetails>>, S::Error> {
    let mut entries = cache.entries.lock().await;
    if let Some(details) = entries.get(event, cache.mono.now()) {
        return Ok(details);
    }
    let details = store.event_details(event).await?.map(Arc::new);
    entries.insert(event, details.clone(), cache.mono.now());
    Ok(details)
}

/// `{"id","name","visibility","starts_at","ends_at","entries":[{"id","name","bib",
/// "devices"}]}`, plus `"truncated":true` when the entries stop at the cap.
pub fn event_json(event: &EventDetails) -> Value {
    let entries: Vec<Value> = event
        .entries
        .iter()
        .map(
            |e| json!({"id": e.id.to_string(), "name": e.name, "bib": e.bib, "devices": e.devices}),
        )
        .collect();
    let mut body = json!({
        "id": event.id.to_string(), "name": event.name, "visibility": event.visibility,
        "starts_at": rfc3339(event.starts_at), "ends_at": rfc3339(event.ends_at),
        "entries": entries,
    });
    if event.truncated {
        body["truncated"] = json!(true);
    }
    body
}

/// RFC 3339, or null for an open end.
pub fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

pub fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // What is shown depends on the token: no shared cache may keep it.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
