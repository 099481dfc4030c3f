//! The operations endpoint on `METRICS_ADDR`: `/metrics`, `/healthz`, `/readyz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::edge::accept::{next_connection, AcceptBackoff};
use crate::edge::http::{self, FirstRequest, HttpLimits};
use crate::metrics::Metrics;
use crate::readiness::Readiness;

/// Serves until `stop` turns true.
/// What the endpoint shows: the metrics, and what keeps `/readyz` from answering 200.
pub trait OpsSource: Send + Sync + 'static {
    fn render_metrics(&self) -> String;
    fn not_ready(&self) -> Vec<&'static str>;
}

/// The service's view: its metrics and readiness flags.
pub struct ServiceOps {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

impl OpsSource for ServiceOps {
    fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    fn not_ready(&self) -> Vec<&'static str> {
        self.readiness.missing()
    }
}

pub async fn serve(
    mut listener: TcpListener,
    source: Arc<dyn OpsSource>,
    accept_errors: Counter,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = AcceptBackoff::new("METRICS_ADDR", accept_errors);
    loop {
        let Some(stream) = next_connection(&mut listener, &mut backoff, &mut stop).await else {
            return;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let first = FirstRequest::default();
            let service = service_fn({
                let first = first.clone();
                move |req| {
                    first.arrived();
                    let response = respond(&req, source.as_ref());
                    async move { Ok::<_, Infallible>(response) }
                }
            });
            if let Err(error) = http::serve(stream, service, first, limits, false).await {
                tracing::debug!(%error, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on METRICS_ADDR {addr}: {e}"),
        )
    })
}

fn respond(req: &Request<Incoming>, source: &dyn OpsSource) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served here\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, source.render_metrics());
            if let Ok(value) = "application/openmetrics-text; version=1.0.0; charset=utf-8".parse()
            {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let missing = source.not_ready();
            if missing.is_empty() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", missing.join(", ")),
                )
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
