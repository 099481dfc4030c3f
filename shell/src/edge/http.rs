//! One HTTP/1.1 connection under the edge's bounds: the first request head must arrive
//! complete within the header timeout and fit in 16 KiB (else 431); after a response, the
//! connection may sit idle for the idle timeout, within which the next head must be in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request head: hyper answers a longer one with 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// `LIVE_HTTP_HEADER_TIMEOUT_MS`: the first request head, from the connection's start.
    pub header_timeout: Duration,
    /// `LIVE_HTTP_IDLE_TIMEOUT_MS`: from a response to the next request head complete.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    /// The contract's defaults, for listeners without variables of their own (the gateway's
    /// metrics endpoint).
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_millis(10_000),
            idle_timeout: Duration::from_millis(30_000),
        }
    }
}

/// Marks that a request arrived, so that the first-head deadline no longer applies.
#[derive(Clone, Default)]
pub struct FirstRequest(Arc<AtomicBool>);

impl FirstRequest {
    pub fn arrived(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Serves `io` with `service` (which must call [`FirstRequest::arrived`] for each request)
/// under `limits`; upgrades (WebSockets) are let through when `upgrades`.
pub async fn serve<I, S, B>(
    io: I,
    service: S,
    first: FirstRequest,
    limits: HttpLimits,
    upgrades: bool,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    // hyper starts its header timer whenever it waits for a head, idle keep-alive included,
    // so it carries the idle timeout; the first head's shorter deadline is kept below.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout.max(limits.header_timeout))
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if upgrades {
        within_first_head(connection.with_upgrades(), &first, limits.header_timeout).await
    } else {
        within_first_head(connection, &first, limits.header_timeout).await
    }
}

/// Runs `connection` until it ends, or until the header timeout passed without a request.
async fn within_first_head(
    connection: impl std::future::Future<Output = Result<(), hyper::Error>>,
    first: &FirstRequest,
    header_timeout: Duration,
) -> Result<(), hyper::Error> {
    tokio::pin!(connection);
    tokio::select! {
        biased;
        result = &mut connection => result,
        () = first_head_missed(first, header_timeout) => Ok(()),
    }
}

/// Resolves when the header timeout passed without a first request; never otherwise.
async fn first_head_missed(first: &FirstRequest, header_timeout: Duration) {
    tokio::time::sleep(header_timeout).await;
    if first.0.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}
