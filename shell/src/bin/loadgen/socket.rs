//! A client WebSocket for the history subcommands: a trail or resume snapshot of a large
//! event is one message of megabytes, so the message limit is raised well above
//! tungstenite's default (64 MiB), and Nagle is off so that a `subscribe` leaves at once.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest message accepted from the server.
const MAX_MESSAGE_BYTES: usize = 1 << 30;

pub async fn open(url: &str) -> Result<Socket, String> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    Ok(socket)
}
