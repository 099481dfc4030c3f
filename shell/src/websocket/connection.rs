//! One WebSocket connection: a reader that forwards client frames to the hub, and one
//! writer that takes everything queued, feeds it and flushes once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::tungstenite::error::CapacityError;
use hyper_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use hyper_tungstenite::tungstenite::protocol::CloseFrame;
use hyper_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use hyper_tungstenite::HyperWebsocketStream;
use tokio::sync::mpsc;

use processor_core::live::{ConnId, Principal};

use crate::clock::Clock;
use crate::hub::{HubInput, Outbound};
use crate::metrics::Metrics;

/// Frames written per flush at most, so one busy connection yields to the others.
const MAX_FRAMES_PER_FLUSH: usize = 256;
/// A client that takes no bytes for this long is dropped: its writer must not hang forever
/// on a full socket, even after the hub has asked to close it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run<C: Clock>(
    ws: HyperWebsocketStream,
    conn: ConnId,
    principal: Principal,
    hub: mpsc::UnboundedSender<HubInput>,
    metrics: Arc<Metrics>,
    clock: C,
) {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    if hub
        .send(HubInput::Connected {
            conn,
            principal,
            outbound: out_tx,
        })
        .is_err()
    {
        return;
    }
    let (sink, stream) = ws.split();
    tokio::select! {
        biased;
        _ = write(sink, out_rx, conn, &hub, &metrics, &clock) => {}
        _ = read(stream, conn, &hub) => {}
    }
    let _ = hub.send(HubInput::Closed { conn });
}

async fn read(
    mut stream: futures_util::stream::SplitStream<HyperWebsocketStream>,
    conn: ConnId,
    hub: &mpsc::UnboundedSender<HubInput>,
) {
    while let Some(frame) = stream.next().await {
        let input = match frame {
            Ok(Message::Text(text)) => HubInput::Text {
                conn,
                text: Bytes::from(text),
            },
            Ok(Message::Binary(_)) => HubInput::Binary { conn },
            Ok(Message::Pong(_)) => HubInput::Pong { conn },
            Ok(Message::Ping(_)) | Ok(Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => return,
            Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                // The hub answers with 1009; the writer sends it, then the connection ends.
                let _ = hub.send(HubInput::TooLarge { conn });
                std::future::pending::<()>().await;
                return;
            }
            Err(error) => {
                tracing::debug!(%conn, %error, "websocket read ended");
                return;
            }
        };
        if hub.send(input).is_err() {
            return;
        }
    }
}

async fn write<C: Clock>(
    mut sink: futures_util::stream::SplitSink<HyperWebsocketStream, Message>,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    conn: ConnId,
    hub: &mpsc::UnboundedSender<HubInput>,
    metrics: &Metrics,
    clock: &C,
) {
    let mut batch = Vec::with_capacity(MAX_FRAMES_PER_FLUSH);
    while queue.recv_many(&mut batch, MAX_FRAMES_PER_FLUSH).await > 0 {
        let mut written = 0u64;
        let mut close = None;
        for outbound in batch.drain(..) {
            let message = match outbound {
                Outbound::Text { bytes, fix_ts } => {
                    if let Some(fix) = fix_ts {
                        metrics
                            .live_broadcast_lag_ms
                            .observe(clock.now().since(fix).max(0) as f64);
                    }
                    written += bytes.len() as u64;
                    match Utf8Bytes::try_from(bytes) {
                        Ok(text) => Message::Text(text),
                        Err(_) => continue,
                    }
                }
                Outbound::Ping => Message::Ping(Bytes::new()),
                Outbound::Close { code, reason } => {
                    close = Some(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: Utf8Bytes::from_static(reason),
                    })));
                    break;
                }
            };
            if !feed(&mut sink, message).await {
                return;
            }
        }
        if let Some(frame) = close {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(frame)).await;
            let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
            return;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, sink.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%conn, %error, "websocket write failed");
                return;
            }
            Err(_) => {
                tracing::info!(%conn, "client took nothing for 10 s; dropping it");
                return;
            }
        }
        if written > 0
            && hub
                .send(HubInput::Drained {
                    conn,
                    bytes: written,
                })
                .is_err()
        {
            return;
        }
    }
}

async fn feed(
    sink: &mut futures_util::stream::SplitSink<HyperWebsocketStream, Message>,
    message: Message,
) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.feed(message)).await,
        Ok(Ok(()))
    )
}
