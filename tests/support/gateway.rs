//! `processor gateway` as a child process, and a tracker that speaks Teltonika to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use processor_core::teltonika::tcp_frame::{encode_identity, encode_packet};
use processor_core::teltonika::{encode_data, AvlRecord, Codec, IoValue};

use super::{free_addr, http_get, redis_url, TestEnv, PATIENCE};

pub struct GatewayProc {
    pub child: Child,
    /// TCP and UDP (the same port).
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
}

impl GatewayProc {
    /// Starts a gateway appending to `env`'s stream; `vars` add or override settings.
    pub fn start(env: &TestEnv, name: &str, vars: &[(&str, String)]) -> GatewayProc {
        let addr = free_addr();
        let metrics_addr = free_addr();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{}-gateway-{name}.log", env.name));
        let log_file = std::fs::File::create(&log).expect("create the gateway log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_processor"));
        command
            .arg("gateway")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis_url())
            .env("DATABASE_URL", env.database_url())
            .env("REDIS_TELEMETRY_STREAM", &env.stream)
            .env("GATEWAY_TCP_ADDR", addr.to_string())
            .env("GATEWAY_UDP_ADDR", addr.to_string())
            .env("METRICS_ADDR", metrics_addr.to_string())
            .env("LOG_LEVEL", "info,processor_shell=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in vars {
            command.env(k, v);
        }
        let child = command.spawn().expect("start processor gateway");
        GatewayProc {
            child,
            addr,
            metrics_addr,
            log,
        }
    }

    pub async fn ready(&self) -> Option<bool> {
        http_get(self.metrics_addr, "/readyz")
            .await
            .map(|(status, _, _)| status == 200)
    }

    /// The value of a metric sample line starting with `name` (labels included).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        super::metric(self.metrics_addr, name).await
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        super::terminate(&mut self.child)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tracker's TCP connection.
pub struct Tracker {
    pub stream: TcpStream,
}

/// What the gateway did next: bytes, or the end of the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Bytes(Vec<u8>),
    Closed,
}

impl Tracker {
    /// Connects, retrying while the gateway is still binding its listener.
    pub async fn connect(addr: SocketAddr) -> Tracker {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(stream) = TcpStream::connect(addr).await {
                return Tracker { stream };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway not listening"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("send to the gateway");
    }

    /// Sends the handshake; returns the gateway's one-byte answer.
    pub async fn handshake(&mut self, imei: &str) -> Answer {
        self.send(&encode_identity(imei)).await;
        self.read(1).await
    }

    /// The next `n` bytes, or `Closed` when the gateway closes first.
    pub async fn read(&mut self, n: usize) -> Answer {
        let mut buf = vec![0u8; n];
        let read = tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut buf))
            .await
            .expect("an answer within the test's patience");
        match read {
            Ok(_) => Answer::Bytes(buf),
            Err(_) => Answer::Closed,
        }
    }

    /// The next 4-byte acknowledgement as a record count.
    pub async fn ack(&mut self) -> Option<u32> {
        match self.read(4).await {
            Answer::Bytes(b) => Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            Answer::Closed => None,
        }
    }

    /// Reads until the gateway closes; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let read = tokio::time::timeout(PATIENCE, self.stream.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the gateway did not close the connection");
        out
    }
}

/// A plausible record with a fix at `ts_ms`, moving east with `i`.
pub fn record(codec: Codec, ts_ms: u64, i: i32) -> AvlRecord {
    AvlRecord {
        timestamp_ms: ts_ms,
        priority: 0,
        longitude: 252_800_000 + i * 1_000,
        latitude: 546_800_000,
        altitude: 120,
        angle: 90,
        satellites: 9,
        speed: 36,
        event_io_id: 0,
        generation_type: (codec == Codec::Codec16).then_some(1),
        io: vec![(239, IoValue::Fixed { width: 1, value: 1 })],
    }
}

/// A whole TCP packet of `records`.
pub fn packet(codec: Codec, records: &[AvlRecord]) -> Vec<u8> {
    encode_packet(&encode_data(codec, records).expect("encodable records"))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
