//! `GET /events/<uuid>/tracks?from=<ms>&to=<ms>[&format=gpx]` (contract section 5.1): the
//! event's tracks as GeoJSON or GPX, streamed.
//!
//! Authorized exactly as `GET /events/<uuid>` (and so as a subscription to the topic): the
//! same 401, the same 404 for an event not allowed and one that does not exist. The body
//! is written as Postgres is read: a producer task reads one device's fixes a page at a
//! time along the positions key, encodes them ([`TrackWriter`]) and hands chunks to the
//! response through a channel of a few chunks, so memory per export is a few chunks and a
//! page whatever its size, and a slow reader slows the reads. A pooled connection is held
//! for one page's statement only, never while waiting for the reader; a reader that takes
//! nothing for [`STALL`] is given up on, and at most [`MAX_CONCURRENT_EXPORTS`] run at
//! once (more get 503), so that no client can hold the pool or the process.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use processor_core::wire::{parse_export_query, ExportFormat, ExportWindow, TrackWriter};
use processor_core::UnixMillis;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::live::ports::LiveStore;
use crate::postgres::position_row::to_system_time;

use super::event_route::{authorized_event, json_response, DetailsCache};

/// Exports running at once at most.
pub const MAX_CONCURRENT_EXPORTS: usize = 8;
/// Rows per statement.
const PAGE_ROWS: i64 = 5_000;
/// A chunk is handed to the response once it holds this much.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for the reader at most.
const CHUNKS_AHEAD: usize = 4;
/// A reader that takes no chunk for this long is given up on.
pub const STALL: Duration = Duration::from_secs(30);

/// Every response body of `LIVE_WS_ADDR`: whole, or an export's stream.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, ExportAborted>;

/// An export that could not be finished (Postgres failed, the reader stalled): the
/// connection is cut, so that a client never takes a cut-short document for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("the export was cut short: {0}")]
pub struct ExportAborted(String);

/// A whole body as a [`ResponseBody`].
pub fn whole(response: Response<Full<Bytes>>) -> Response<ResponseBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// The slots of concurrent exports.
#[derive(Debug, Clone)]
pub struct Exports(Arc<Semaphore>);

impl Default for Exports {
    fn default() -> Self {
        Exports(Arc::new(Semaphore::new(MAX_CONCURRENT_EXPORTS)))
    }
}

pub async fn respond<S: LiveStore, C: Clock>(
    parts: &Parts,
    id: &str,
    auth: &Authenticator,
    store: &S,
    clock: &C,
    cache: &DetailsCache,
    exports: &Exports,
) -> Response<ResponseBody> {
    let (window, format) = match parse_export_query(parts.uri.query()) {
        Ok(query) => query,
        Err(error) => {
            let body = json!({"error": "bad_request", "message": error.to_string()});
            return whole(json_response(StatusCode::BAD_REQUEST, body.to_string()));
        }
    };
    let details = match authorized_event(parts, id, auth, store, clock, cache).await {
        Ok(details) => details,
        Err(refused) => return whole(refused),
    };
    let Ok(permit) = exports.0.clone().try_acquire_owned() else {
        return whole(try_again("too many exports running; try again"));
    };
    // Every device of the event: the details are capped for one response, an export is not.
    let devices = match store.event_devices(details.id).await {
        Ok(devices) => devices,
        Err(error) => {
            tracing::warn!(%error, "export: reading the event's devices failed");
            return whole(try_again("event devices unavailable; try again"));
        }
    };
    let body = if parts.method == Method::HEAD {
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        tokio::spawn(produce(store.clone(), devices, window, format, tx, permit));
        ExportStream { rx: Some(rx) }.boxed_unsync()
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 503 `unavailable` with `Retry-After`: the export may succeed in a few seconds.
fn try_again(message: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": "unavailable", "message": message});
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string());
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

enum Chunk {
    Data(Bytes),
    /// The document is complete.
    Done,
    Failed(String),
}

/// Reads and encodes the export into `tx`; holds `_permit` until it is done.
async fn produce<S: LiveStore>(
    store: S,
    devices: Vec<String>,
    window: ExportWindow,
    format: ExportFormat,
    tx: mpsc::Sender<Chunk>,
    _permit: OwnedSemaphorePermit,
) {
    let mut writer = TrackWriter::new(format);
    let mut buf = Vec::with_capacity(CHUNK_BYTES * 2);
    writer.begin(&mut buf);
    let to = to_system_time(UnixMillis(window.to));
    for device in devices {
        let mut after = to_system_time(UnixMillis(window.from.saturating_sub(1)));
        loop {
            let page = match store.track_page(device.clone(), after, to, PAGE_ROWS).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "export: reading a track failed");
                    let _ = hand(&tx, Chunk::Failed(error.to_string())).await;
                    return;
                }
            };
            for point in &page {
                writer.point(&device, point.ts, point.lat, point.lon, &mut buf);
                if buf.len() >= CHUNK_BYTES && !flush(&tx, &mut buf).await {
                    return;
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 >= PAGE_ROWS => after = last.key,
                _ => break,
            }
        }
    }
    writer.end(&mut buf);
    if flush(&tx, &mut buf).await {
        let _ = hand(&tx, Chunk::Done).await;
    }
}

/// Hands what `buf` holds to the reader; false when the reader is gone or stalled.
async fn flush(tx: &mpsc::Sender<Chunk>, buf: &mut Vec<u8>) -> bool {
    let chunk = Bytes::from(std::mem::replace(buf, Vec::with_capacity(CHUNK_BYTES * 2)));
    hand(tx, Chunk::Data(chunk)).await
}

async fn hand(tx: &mpsc::Sender<Chunk>, chunk: Chunk) -> bool {
    matches!(
        tokio::time::timeout(STALL, tx.send(chunk)).await,
        Ok(Ok(()))
    )
}

/// The response side of the channel. A channel that closes without [`Chunk::Done`] (the
/// producer gave up on a stalled reader, or failed) ends the body with an error.
struct ExportStream {
    rx: Option<mpsc::Receiver<Chunk>>,
}

impl Body for ExportStream {
    type Data = Bytes;
    type Error = ExportAborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExportAborted>>> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(None);
        };
        let next = match rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        match next {
            Some(Chunk::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Chunk::Done) => {
                self.rx = None;
                Poll::Ready(None)
            }
            Some(Chunk::Failed(why)) => {
                self.rx = None;
                Poll::Ready(Some(Err(ExportAborted(why))))
            }
            None => {
                self.rx = None;
                Poll::Ready(Some(Err(ExportAborted("the export stopped".to_owned()))))
            }
        }
    }
}
