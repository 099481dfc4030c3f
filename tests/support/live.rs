//! Live-path helpers: events in Postgres, tokens, WebSocket clients.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use super::{TestEnv, PATIENCE};

pub const SECRET: &str = "test-secret-at-least-32-bytes-long!!";

/// Creates an event with one entry carrying `devices`.
pub async fn seed_event(env: &TestEnv, visibility: &str, devices: &[String]) -> Uuid {
    let event = unique_uuid();
    let entry = unique_uuid();
    let pg = env.pg().await;
    pg.execute(
        "INSERT INTO events (id, name, visibility) VALUES ($1, 'test', $2)",
        &[&event, &visibility],
    )
    .await
    .expect("insert event");
    pg.execute(
        "INSERT INTO entries (id, event_id, name) VALUES ($1, $2, 'entry')",
        &[&entry, &event],
    )
    .await
    .expect("insert entry");
    for d in devices {
        pg.execute(
            "INSERT INTO entry_devices (entry_id, device_id) VALUES ($1, $2)",
            &[&entry, d],
        )
        .await
        .expect("insert entry device");
    }
    event
}

/// A UUID no other test uses (the uuid crate's random ones need a feature the core avoids).
pub fn unique_uuid() -> Uuid {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = u128::from(COUNTER.fetch_add(1, Ordering::Relaxed));
    Uuid::from_u128((nanos << 32) ^ (u128::from(std::process::id()) << 16) ^ n)
}

/// An HS256 token with these claims plus `exp` an hour from now (unless `claims` has one).
pub fn token(mut claims: Value) -> String {
    if claims.get("exp").is_none() {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + 3_600;
        claims["exp"] = json!(exp);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a test token")
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Connects to `/live`; `Err(status)` when the server refuses the upgrade.
pub async fn connect(addr: std::net::SocketAddr, token: Option<&str>) -> Result<Client, u16> {
    let url = match token {
        Some(t) => format!("ws://{addr}/live?access_token={t}"),
        None => format!("ws://{addr}/live"),
    };
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(Client { ws }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("cannot connect to the WebSocket server: {e}"),
    }
}

/// Connects anonymously to `/live` over a socket whose receive buffer is asked to be
/// `recv_buffer` bytes, so that a client that stops reading fills the kernel buffers soon.
pub async fn connect_with_small_receive_buffer(
    addr: std::net::SocketAddr,
    recv_buffer: u32,
) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .set_recv_buffer_size(recv_buffer)
        .expect("set SO_RCVBUF");
    let stream = socket.connect(addr).await.expect("connect to the server");
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/live"), MaybeTlsStream::Plain(stream))
            .await
            .expect("WebSocket upgrade");
    Client { ws }
}

/// Adds an entry (without devices) to `event`; returns its id.
pub async fn add_entry(env: &TestEnv, event: Uuid) -> Uuid {
    let entry = unique_uuid();
    env.pg()
        .await
        .execute(
            "INSERT INTO entries (id, event_id, name) VALUES ($1, $2, 'entry')",
            &[&entry, &event],
        )
        .await
        .expect("insert entry");
    entry
}

/// Puts `device` in `entry`.
pub async fn add_device(env: &TestEnv, entry: Uuid, device: &str) {
    env.pg()
        .await
        .execute(
            "INSERT INTO entry_devices (entry_id, device_id) VALUES ($1, $2)",
            &[&entry, &device],
        )
        .await
        .expect("insert entry device");
}

impl Client {
    /// Sends one raw frame (e.g. a fragment of a message).
    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send to the server");
    }

    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send to the server");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send to the server");
    }

    /// The next JSON message; fails the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Value {
        match self.next_frame().await {
            Frame::Json(v) => v,
            Frame::Closed(code) => {
                panic!("connection closed ({code:?}) while a message was expected")
            }
        }
    }

    pub async fn next_frame(&mut self) -> Frame {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a message within the test's patience");
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return Frame::Json(serde_json::from_str(&t).expect("the server sends JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Frame::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Frame::Closed(None),
            }
        }
    }

    /// Subscribes and returns the snapshot's positions, after checking `subscribed`.
    pub async fn subscribe(&mut self, event: Uuid) -> Vec<Value> {
        let topic = format!("event:{event}");
        self.send(json!({"type": "subscribe", "topic": topic}))
            .await;
        let first = self.next().await;
        assert_eq!(first, json!({"type": "subscribed", "topic": topic}));
        let snapshot = self.next().await;
        assert_eq!(
            snapshot["type"], "snapshot",
            "a snapshot follows `subscribed`: {snapshot}"
        );
        assert_eq!(snapshot["topic"], topic);
        snapshot["positions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

pub enum Frame {
    Json(Value),
    Closed(Option<u16>),
}

/// A short pause between polls of something with no event to await.
pub const POLL: Duration = Duration::from_millis(50);

/// Stores a `positions` row as the durable path would have.
pub async fn store_position(
    env: &TestEnv,
    device: &str,
    ts: i64,
    lat: f64,
    lon: f64,
    faulty: bool,
) {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ts as u64);
    env.pg()
        .await
        .execute(
            "INSERT INTO positions (device_id, ts, latitude, longitude, altitude, angle, speed,
                 satellites, priority, faulty, received_at)
             VALUES ($1, $2, $3, $4, 0, 0, 0, 9, 0, $5, now())",
            &[&device, &at, &lat, &lon, &faulty],
        )
        .await
        .expect("insert a position");
}

/// A client of a ready processor whose device map already holds `device` in `event` (its
/// snapshot shows the device), left with no subscription. The map refresh has no event to
/// await, so this subscribes again until it shows.
pub async fn client_once_mapped(p: &super::Processor, event: Uuid, device: &str) -> Client {
    super::wait_until("ready", || async { p.ready().await == Some(true) }).await;
    loop {
        let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
        let snapshot = client.subscribe(event).await;
        if snapshot.iter().any(|pos| pos["deviceId"] == device) {
            client
                .send(json!({"type": "unsubscribe", "topic": format!("event:{event}")}))
                .await;
            assert_eq!(client.next().await["type"], "unsubscribed");
            return client;
        }
        tokio::time::sleep(POLL).await;
    }
}
