//! `loadgen export`: one track export read to the end as fast as it comes.
//!
//! The body is GeoJSON (docs/protocol.md, "History"): a FeatureCollection whose every
//! feature is `{"type":"Feature","geometry":{...,"coordinates":[[lon,lat],...]},
//! "properties":{"deviceId":...,"timestamps":[...]}}`. Points are counted from the body's
//! brackets without parsing it: the document opens one `[` and one `{`, each feature three
//! `{` and two `[` besides one `[` per point (device ids without brackets or braces, as the
//! benchmark's are). An export the server cuts short (it closes the connection mid-body)
//! is an error, never a figure.

use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

#[derive(Args)]
pub struct ExportArgs {
    /// `http://<host>:<port>/events/<uuid>/tracks?from=<ms>&to=<ms>`
    #[arg(long)]
    url: Uri,
}

/// What the body held.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    bytes: u64,
    brackets: u64,
    braces: u64,
}

impl Counts {
    fn add(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        for b in chunk {
            match b {
                b'[' => self.brackets += 1,
                b'{' => self.braces += 1,
                _ => {}
            }
        }
    }

    fn features(&self) -> u64 {
        self.braces.saturating_sub(1) / 3
    }

    fn points(&self) -> u64 {
        self.brackets
            .saturating_sub(1)
            .saturating_sub(2 * self.features())
    }
}

pub async fn run(args: ExportArgs) -> Result<(), String> {
    let url = &args.url;
    if url.scheme_str() != Some("http") {
        return Err(format!("--url {url}: only http:// is supported"));
    }
    let host = url.host().ok_or_else(|| format!("--url {url}: no host"))?;
    let authority = format!("{host}:{}", url.port_u16().unwrap_or(80));
    let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let stream = TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {authority} failed: {e}"))?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(HOST, &authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request for {path}: {e}"))?;
    let started = Instant::now();
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path} failed: {e}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if status != StatusCode::OK {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(format!("GET {path} answered {status}: {body}"));
    }
    if content_type != "application/geo+json" {
        return Err(format!(
            "GET {path} answered {content_type:?}; only GeoJSON is counted"
        ));
    }
    let mut counts = Counts::default();
    let mut first_byte_ms = None;
    let mut tail = Vec::new();
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame
            .map_err(|e| format!("the export was cut short after {} bytes: {e}", counts.bytes))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        first_byte_ms.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1_000.0);
        counts.add(data);
        // The last two bytes of the body so far, whatever the chunks' sizes.
        tail.extend_from_slice(&data[data.len().saturating_sub(2)..]);
        tail.drain(..tail.len().saturating_sub(2));
    }
    let seconds = started.elapsed().as_secs_f64();
    if tail != b"]}" {
        return Err(format!(
            "the export ended without closing its FeatureCollection after {} bytes",
            counts.bytes
        ));
    }
    let points = counts.points();
    let report = Report {
        mode: "export",
        bytes: counts.bytes,
        features: counts.features(),
        points,
        seconds: (seconds * 1_000.0).round() / 1_000.0,
        first_byte_ms: first_byte_ms.map(|ms| (ms * 10.0).round() / 10.0),
        points_per_s: (points as f64 / seconds).round(),
        mib_per_s: (counts.bytes as f64 / seconds / 1_048_576.0 * 10.0).round() / 10.0,
    };
    let line = serde_json::to_string(&report).map_err(|e| format!("cannot print: {e}"))?;
    println!("{line}");
    Ok(())
}

/// What is printed, in this order.
#[derive(Serialize)]
struct Report {
    mode: &'static str,
    bytes: u64,
    features: u64,
    points: u64,
    seconds: f64,
    first_byte_ms: Option<f64>,
    points_per_s: f64,
    mib_per_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_features_and_points_across_chunks() {
        let doc = br#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"LineString","coordinates":[[25.1,54.1],[25.2,54.2]]},"properties":{"deviceId":"1","timestamps":[1,2]}},{"type":"Feature","geometry":{"type":"LineString","coordinates":[[25.3,54.3]]},"properties":{"deviceId":"2","timestamps":[3]}}]}"#;
        let mut counts = Counts::default();
        for chunk in doc.chunks(7) {
            counts.add(chunk);
        }
        assert_eq!(counts.features(), 2);
        assert_eq!(counts.points(), 3);
        assert_eq!(counts.bytes, doc.len() as u64);
        let mut empty = Counts::default();
        empty.add(br#"{"type":"FeatureCollection","features":[]}"#);
        assert_eq!((empty.features(), empty.points()), (0, 0));
    }
}
