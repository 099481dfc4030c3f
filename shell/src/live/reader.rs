//! A connection's reader: client bytes through the core's frame reader into its shard.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use processor_core::live::{ConnId, Input};
use processor_core::websocket::{ClientFrame, FrameReader, HARD_MESSAGE_LIMIT};

use super::input::ShardInput;
use super::socket::Socket;

/// Client messages are a few hundred bytes; a small buffer keeps idle connections cheap.
const READ_CHUNK: usize = 2 * 1024;

/// Reads until the client leaves, closes, or breaks the protocol; the shard decides what
/// follows. `early` holds bytes that arrived with the upgrade request.
pub async fn run(
    socket: Arc<Socket>,
    conn: ConnId,
    early: Bytes,
    shard: mpsc::UnboundedSender<ShardInput>,
) {
    let mut frames = FrameReader::new(HARD_MESSAGE_LIMIT);
    frames.push(&early);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        while let Some(frame) = frames.next() {
            let last = matches!(frame, Err(_) | Ok(ClientFrame::Close(_)));
            if shard
                .send(ShardInput::Core(Input::Frame { conn, frame }))
                .is_err()
                || last
            {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => frames.push(&chunk[..n]),
            Err(error) => {
                tracing::debug!(%conn, %error, "websocket read ended");
                break;
            }
        }
    }
    let _ = shard.send(ShardInput::Core(Input::Closed { conn }));
}
