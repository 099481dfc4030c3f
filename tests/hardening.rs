//! The public edge under abuse and faults (contract section 5, "Connections", "Token
//! lifetime", "Visibility changes", the message rate and protocol errors), against the
//! real binary, with raw TCP where a WebSocket library would hide what the server does.

mod support;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::live::{connect, seed_event, token, Frame, SECRET};
use support::{wait_until, Processor, TestEnv, PATIENCE};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn device(n: u64) -> String {
    (356_307_050_000_000u64 + n).to_string()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn vars(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
        ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
    ];
    v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
    v
}

async fn ready(p: &Processor) {
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
}

/// Sends `request` on a fresh connection and reads the response head (status and
/// lower-cased headers), keeping the stream for what follows.
async fn raw(addr: std::net::SocketAddr, request: &str) -> (TcpStream, u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("a response within the test's patience")
            .expect("read the response");
        assert!(n == 1, "the server closed before answering");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (stream, status, head)
}

fn upgrade_request(method: &str, key: &str, extra: &str) -> String {
    format!(
        "{method} /live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    )
}

/// A client frame, masked unless `masked` is false.
fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut out = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads server frames until a close frame; returns its code.
async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Frames from the server are unmasked: 2 header bytes (short payloads here).
        while buf.len() >= 2 {
            let len = usize::from(buf[1] & 0x7f);
            let (header, len) = match len {
                126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
                126 => break,
                127 => panic!("no frame here is that long"),
                n => (2, n),
            };
            if buf.len() < header + len {
                break;
            }
            if buf[0] & 0x0f == 0x8 {
                let payload = &buf[header..header + len];
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            buf.drain(..header + len);
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a close frame within the test's patience")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_is_a_get_with_a_valid_key_and_a_refusal_says_bearer() {
    let env = TestEnv::new("hard_upgrade").await;
    let p = Processor::start(&env, "a", &vars(&[]));
    ready(&p).await;
    let addr = p.ws_addr;
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let (_, status, head) = raw(addr, &upgrade_request(method, KEY, "")).await;
        assert_eq!(status, 405, "{method} is refused");
        assert!(head.contains("allow: get"), "{head}");
    }
    for key in [
        "short",
        "dGhlIHNhbXBsZSBub25jZR==",
        "dGhlIHNhbXBsZSBub25j!!==",
        "",
    ] {
        let (_, status, _) = raw(addr, &upgrade_request("GET", key, "")).await;
        assert_eq!(status, 400, "key {key:?} is refused");
    }
    let (_, status, _) = raw(addr, &upgrade_request("GET", KEY, "")).await;
    assert_eq!(status, 101, "a valid key is upgraded");

    let bad = "GET /live?access_token=not.a.jwt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
               Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let (_, status, head) = raw(addr, bad).await;
    assert_eq!(status, 401);
    assert!(
        head.contains("www-authenticate: bearer") && head.contains("error=\"invalid_token\""),
        "{head}"
    );
    drop(p);

    let p = Processor::start(&env, "b", &vars(&[("LIVE_ALLOW_ANONYMOUS", "false")]));
    ready(&p).await;
    let (_, status, head) = raw(p.ws_addr, &upgrade_request("GET", KEY, "")).await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(!head.contains("error="), "no token, no error code: {head}");
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_answered_with_a_close_frame() {
    let env = TestEnv::new("hard_protocol").await;
    let p = Processor::start(&env, "a", &vars(&[]));
    ready(&p).await;
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("unmasked frame", client_frame(0x81, b"{}", false), 1002),
        (
            "reserved bits",
            client_frame(0x81 | 0x40, b"{}", true),
            1002,
        ),
        ("reserved opcode", client_frame(0x83, b"{}", true), 1002),
        (
            "invalid UTF-8",
            client_frame(0x81, &[0xff, 0xfe], true),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let (mut stream, status, _) = raw(p.ws_addr, &upgrade_request("GET", KEY, "")).await;
        assert_eq!(status, 101);
        stream.write_all(&bytes).await.expect("send the frame");
        assert_eq!(close_code(&mut stream).await, Some(code), "{what}");
    }
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_completes_is_dropped_and_a_huge_one_gets_431() {
    let env = TestEnv::new("hard_heads").await;
    let p = Processor::start(
        &env,
        "a",
        &vars(&[
            ("LIVE_HTTP_HEADER_TIMEOUT_MS", "300"),
            ("LIVE_HTTP_IDLE_TIMEOUT_MS", "600"),
        ]),
    );
    ready(&p).await;
    for addr in [p.ws_addr, p.metrics_addr] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("send half a head");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the server gives up on the head within the test's patience")
            .unwrap_or(0);
        assert_eq!(n, 0, "the connection is closed, nothing answered");

        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let (_, status, _) = raw(addr, &big).await;
        assert_eq!(status, 431, "a head over 16 KiB on {addr}");
    }
    // An idle keep-alive connection is closed too.
    let (mut stream, status, _) = raw(p.ws_addr, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed within the test's patience");
    assert!(read.is_ok());
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_websocket_over_the_cap_gets_503_and_retry_after() {
    let env = TestEnv::new("hard_cap").await;
    let p = Processor::start(&env, "a", &vars(&[("LIVE_WS_MAX_CONNECTIONS", "2")]));
    ready(&p).await;
    let first = connect(p.ws_addr, None).await.expect("first");
    let _second = connect(p.ws_addr, None).await.expect("second");
    let (_, status, head) = raw(p.ws_addr, &upgrade_request("GET", KEY, "")).await;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after:"), "{head}");
    drop(first);
    wait_until("a slot is free again", || async {
        connect(p.ws_addr, None).await.is_ok()
    })
    .await;
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_never_spins() {
    let env = TestEnv::new("hard_fds").await;
    let mut p = Processor::start_limited(
        &env,
        "a",
        &vars(&[("LIVE_HTTP_HEADER_TIMEOUT_MS", "1000")]),
        100,
    );
    ready(&p).await;
    // More idle connections than the process has descriptors left.
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(
            TcpStream::connect(p.ws_addr)
                .await
                .expect("the kernel queues it"),
        );
    }
    wait_until("failed accepts are counted", || async {
        p.metric("processor_live_accept_errors_total")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    drop(idle);
    assert_eq!(
        support::http_get(p.metrics_addr, "/healthz")
            .await
            .map(|r| r.0),
        Some(200)
    );
    let logged = p
        .log_text()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    // Logged at most once a second (it was 1.74 million lines in 4 s when accepting spun).
    assert!(logged <= 30, "{logged} accept-failure lines");
    assert!(
        p.child.try_wait().expect("poll the child").is_none(),
        "still running"
    );
    drop(p);
    env.cleanup().await;
}

/// A client subscribed to `event`, on a token with these claims.
async fn subscribed(p: &Processor, claims: Value, event: uuid::Uuid) -> support::live::Client {
    let mut client = connect(p.ws_addr, Some(&token(claims)))
        .await
        .expect("the token is valid");
    client.subscribe(event).await;
    client
}

/// Messages until the connection closes; returns them and the close code.
async fn until_closed(client: &mut support::live::Client) -> (Vec<Value>, Option<u16>) {
    let mut seen = Vec::new();
    loop {
        match client.next_frame().await {
            Frame::Json(v) => seen.push(v),
            Frame::Closed(code) => return (seen, code),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_holds_until_its_exp_and_auth_renews_it() {
    let env = TestEnv::new("hard_token").await;
    let private = seed_event(&env, "private", &[device(1)]).await;
    let other = seed_event(&env, "private", &[device(2)]).await;
    let p = Processor::start(&env, "a", &vars(&[]));
    ready(&p).await;

    // Expires: closed with 4001.
    let exp = now_s() + 2;
    let mut client = subscribed(
        &p,
        json!({"events": [private.to_string()], "exp": exp}),
        private,
    )
    .await;
    let (_, code) = until_closed(&mut client).await;
    assert_eq!(code, Some(4001), "closed when the token expired");
    assert!(now_s() >= exp, "not before the token's exp");

    // Renewed: the new exp holds, and what the new claims do not grant ends.
    // Far enough out that the renewal below is in before it, however loaded the machine.
    let first_exp = now_s() + 10;
    let mut client = subscribed(
        &p,
        json!({"events": [private.to_string()], "exp": first_exp}),
        private,
    )
    .await;
    client
        .send(json!({"type": "auth", "token": "not.a.token"}))
        .await;
    let refused = client.next().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    let renewed_exp = first_exp + 2;
    client
        .send(json!({"type": "auth", "token": token(json!({"events": [other.to_string()], "exp": renewed_exp}))}))
        .await;
    assert_eq!(
        client.next().await,
        json!({"type": "auth", "exp": renewed_exp})
    );
    let revoked = client.next().await;
    assert_eq!(revoked["code"], "forbidden", "{revoked}");
    assert_eq!(revoked["topic"], format!("event:{private}"));
    let (_, code) = until_closed(&mut client).await;
    assert_eq!(code, Some(4001));
    assert!(
        now_s() >= renewed_exp,
        "the renewed exp applies, not the first one"
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_made_private_stops_reaching_anonymous_subscribers() {
    let env = TestEnv::new("hard_visibility").await;
    let event = seed_event(&env, "public", &[device(3)]).await;
    let p = Processor::start(&env, "a", &vars(&[]));
    ready(&p).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous");
    client.subscribe(event).await;
    env.pg()
        .await
        .execute(
            "UPDATE events SET visibility = 'private' WHERE id = $1",
            &[&event],
        )
        .await
        .expect("make the event private");
    let revoked = client.next().await;
    assert_eq!(revoked["type"], "error");
    assert_eq!(revoked["code"], "forbidden");
    assert_eq!(revoked["topic"], format!("event:{event}"));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_rate_get_limit_exceeded_and_are_not_acted_on() {
    let env = TestEnv::new("hard_rate").await;
    let p = Processor::start(&env, "a", &vars(&[("LIVE_WS_MAX_MESSAGES_PER_S", "5")]));
    ready(&p).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous");
    for _ in 0..9 {
        client.send(json!({"type": "ping"})).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..9 {
        let reply = client.next().await;
        match reply["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if reply["code"] == "limit_exceeded" => limited += 1,
            _ => panic!("unexpected reply {reply}"),
        }
    }
    assert!(pongs >= 5, "the burst is answered: {pongs} pongs");
    assert!(limited >= 1, "what goes over the rate is refused");
    // Refusals count as bad messages: one more bad request reaches the limit of 10.
    for _ in 0..10 {
        client.send_text("not json").await;
    }
    let (_, code) = until_closed(&mut client).await;
    assert_eq!(code, Some(1008));
    drop(p);
    env.cleanup().await;
}

fn fix(n: u64, ts: i64) -> String {
    json!({
        "device_id": device(n), "timestamp": ts, "latitude": 54.68, "longitude": 25.28,
        "satellites": 9
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_from_1970_is_stored_faulty_and_never_sent() {
    let env = TestEnv::new("hard_epoch").await;
    let event = seed_event(&env, "public", &[device(4)]).await;
    let p = Processor::start(&env, "a", &vars(&[]));
    ready(&p).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous");
    client.subscribe(event).await;
    let now_ms = i64::try_from(now_s()).unwrap_or(0) * 1_000;
    env.publish(&[fix(4, 0), fix(4, now_ms)]).await;
    let first = client.next().await;
    assert_eq!(first["type"], "position");
    assert_eq!(
        first["ts"],
        json!(now_ms),
        "the 1970 fix is never sent: {first}"
    );
    wait_until("the 1970 fix is stored, faulty", || async {
        env.count("SELECT count(*) FROM positions WHERE faulty AND ts = to_timestamp(0)")
            .await
            == 1
    })
    .await;
    drop(p);
    env.cleanup().await;
}
