//! Test harness: isolated data per test, the real `processor` binary, and a TCP proxy that
//! can cut a connection.
#![allow(dead_code)] // Each test file uses its own part of the harness.

pub mod gateway;
pub mod live;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tokio_postgres::NoTls;

/// Longest a test waits for something to happen before it fails. A guard against hangs,
/// not a timing assertion: everything should happen far sooner.
pub const PATIENCE: Duration = Duration::from_secs(90);

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// One test's own stream keys and Postgres schema, so tests run in parallel.
pub struct TestEnv {
    pub name: String,
    pub schema: String,
    pub stream: String,
    pub dead_letter: String,
}

impl TestEnv {
    pub async fn new(test: &str) -> TestEnv {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{test}_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let env = TestEnv {
            schema: format!("t_{name}"),
            stream: format!("test:{name}:telemetry"),
            dead_letter: format!("test:{name}:dead-letter"),
            name,
        };
        let (client, conn) = tokio_postgres::connect(&base_database_url(), NoTls)
            .await
            .expect("Postgres is reachable (scripts/test.sh starts it)");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {}", env.schema))
            .await
            .expect("create the test schema");
        env.migrate().await;
        env
    }

    /// Runs `processor migrate` on the test's schema; returns its stderr.
    pub async fn migrate(&self) -> String {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor"))
            .arg("migrate")
            .env("DATABASE_URL", self.database_url())
            .env("LOG_LEVEL", "info")
            .output()
            .await
            .expect("run processor migrate");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "processor migrate failed: {stderr}");
        stderr
    }

    /// DATABASE_URL for the processor: the test's schema first on the search path.
    pub fn database_url(&self) -> String {
        let base = base_database_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.schema)
    }

    pub async fn pg(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.database_url(), NoTls)
            .await
            .expect("connect to Postgres");
        tokio::spawn(conn);
        client
    }

    pub async fn redis(&self) -> MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("valid REDIS_URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis")
    }

    /// Appends payloads to the test's stream, pipelined.
    pub async fn publish(&self, payloads: &[String]) {
        let mut redis = self.redis().await;
        for chunk in payloads.chunks(1_000) {
            let mut pipe = redis::pipe();
            for payload in chunk {
                pipe.cmd("XADD")
                    .arg(&self.stream)
                    .arg("*")
                    .arg("payload")
                    .arg(payload)
                    .ignore();
            }
            let _: () = pipe.query_async(&mut redis).await.expect("XADD");
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.pg().await.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// Entries pending in the durable group (0 when the group does not exist yet).
    pub async fn pending(&self) -> i64 {
        let mut redis = self.redis().await;
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg("durable-write")
            .query_async(&mut redis)
            .await
            .unwrap_or(redis::Value::Nil);
        match reply {
            redis::Value::Array(parts) => match parts.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Entries of the stream the durable group has not read yet (`lag` of XINFO GROUPS);
    /// `None` while the group does not exist or Redis cannot tell.
    pub async fn durable_lag(&self) -> Option<i64> {
        let mut redis = self.redis().await;
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut redis)
            .await
            .ok()?;
        let redis::Value::Array(groups) = groups else {
            return None;
        };
        groups.iter().find_map(|group| {
            let redis::Value::Array(fields) = group else {
                return None;
            };
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(
                        |kv| matches!(&kv[0], redis::Value::BulkString(k) if k == name.as_bytes()),
                    )
                    .map(|kv| kv[1].clone())
            };
            match (field("name"), field("lag")) {
                (Some(redis::Value::BulkString(n)), Some(redis::Value::Int(lag)))
                    if n == b"durable-write" =>
                {
                    Some(lag)
                }
                _ => None,
            }
        })
    }

    /// The dead-letter stream's entries as field maps.
    pub async fn dead_letters(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        self.stream_entries(&self.dead_letter).await
    }

    /// The entries of the stream `key`, oldest first, as field maps.
    pub async fn stream_entries(
        &self,
        key: &str,
    ) -> Vec<std::collections::BTreeMap<String, String>> {
        let mut redis = self.redis().await;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut redis)
            .await
            .expect("XRANGE");
        reply
            .ids
            .into_iter()
            .map(|entry| {
                entry
                    .map
                    .into_iter()
                    .map(|(k, v)| {
                        let text: String = redis::from_redis_value(v).unwrap_or_default();
                        (k, text)
                    })
                    .collect()
            })
            .collect()
    }

    pub async fn cleanup(self) {
        let mut redis = self.redis().await;
        let _: redis::Value = redis::cmd("DEL")
            .arg(&self.stream)
            .arg(&self.dead_letter)
            .query_async(&mut redis)
            .await
            .unwrap_or(redis::Value::Nil);
        let (client, conn) = tokio_postgres::connect(&base_database_url(), NoTls)
            .await
            .expect("connect to Postgres");
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await;
    }
}

/// A free local port (the listener is dropped; the processor binds it right after).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
}

/// A running `processor` binary.
pub struct Processor {
    pub child: Child,
    pub metrics_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub log: PathBuf,
}

impl Processor {
    /// Starts the processor on `env`'s stream and schema; `vars` add or override settings.
    pub fn start(env: &TestEnv, instance: &str, vars: &[(&str, String)]) -> Processor {
        Self::start_with(env, instance, &env.database_url(), &redis_url(), vars)
    }

    pub fn start_with(
        env: &TestEnv,
        instance: &str,
        database_url: &str,
        redis_url: &str,
        vars: &[(&str, String)],
    ) -> Processor {
        Self::spawn(env, instance, database_url, redis_url, vars, None)
    }

    /// As [`Self::start`], with the open-files limit (soft and hard) set to `open_files`.
    pub fn start_limited(
        env: &TestEnv,
        instance: &str,
        vars: &[(&str, String)],
        open_files: u32,
    ) -> Processor {
        let (db, redis) = (env.database_url(), redis_url());
        Self::spawn(env, instance, &db, &redis, vars, Some(open_files))
    }

    fn spawn(
        env: &TestEnv,
        instance: &str,
        database_url: &str,
        redis_url: &str,
        vars: &[(&str, String)],
        open_files: Option<u32>,
    ) -> Processor {
        let metrics_addr = free_addr();
        let ws_addr = free_addr();
        let log =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{instance}.log", env.name));
        let log_file = std::fs::File::create(&log).expect("create the processor log");
        let mut command = match open_files {
            None => Command::new(env!("CARGO_BIN_EXE_processor")),
            Some(n) => {
                // The shell sets the limit and becomes the processor (same pid).
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\""))
                    .arg(env!("CARGO_BIN_EXE_processor"));
                c
            }
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", redis_url)
            .env("DATABASE_URL", database_url)
            .env("INSTANCE_ID", instance)
            .env("REDIS_TELEMETRY_STREAM", &env.stream)
            .env("DEAD_LETTER_STREAM", &env.dead_letter)
            .env("METRICS_ADDR", metrics_addr.to_string())
            .env("LIVE_WS_ADDR", ws_addr.to_string())
            .env("LOG_LEVEL", "info,processor_shell=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in vars {
            command.env(k, v);
        }
        let child = command.spawn().expect("start the processor binary");
        Processor {
            child,
            metrics_addr,
            ws_addr,
            log,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// Status code and body of a GET on the metrics endpoint; `None` if not reachable.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_addr, path)
            .await
            .map(|(status, _, body)| (status, body))
    }

    /// `/readyz` answers 200 (`true`) or 503 (`false`).
    pub async fn ready(&self) -> Option<bool> {
        self.get("/readyz").await.map(|(status, _)| status == 200)
    }

    /// The value of a metric sample line starting with `name`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric(self.metrics_addr, name).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// SIGTERM to a child process, then its exit status.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().expect("wait for the child process")
}

/// The value of the sample line starting with `name` (labels included) on the metrics
/// endpoint at `addr`.
pub async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, _, body) = http_get(addr, "/metrics").await?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Status code, header block and body of an HTTP/1.0 GET; `None` if not reachable.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns true; fails the test after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A valid payload for device `device` at fix time `ts` (ms), with a few attributes.
pub fn payload(device: u64, ts: i64) -> String {
    serde_json::json!({
        "device_id": format!("{}", 356_307_040_000_000u64 + device),
        "timestamp": ts,
        "latitude": 54.0 + (device % 100) as f64 / 100.0,
        "longitude": 25.0 + (ts % 1000) as f64 / 10_000.0,
        "altitude": 120.5,
        "angle": (ts % 360) as f64,
        "speed": 42.0,
        "satellites": 9,
        "priority": 1,
        "event_io_id": 239,
        "attributes": {"ignition": true, "odometer": 18_446_744_073_709_551_615u64, "battery": 12.6}
    })
    .to_string()
}
