//! The live path against real Redis, real Postgres, the real `processor` binary and real
//! WebSocket clients.

mod support;

use serde_json::{json, Value};

use support::live::{connect, seed_event, token, unique_uuid, Client, Frame, SECRET};
use support::{wait_until, Processor, TestEnv};

fn device(n: u64) -> String {
    (356_307_040_000_000u64 + n).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A valid, non-faulty position payload.
fn fix(n: u64, ts: i64, speed: f64) -> String {
    json!({
        "device_id": device(n), "timestamp": ts, "latitude": 54.68, "longitude": 25.28,
        "speed": speed, "angle": 270.0, "satellites": 9
    })
    .to_string()
}

fn live_vars() -> Vec<(&'static str, String)> {
    vec![
        ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
        ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
    ]
}

fn ws_addr(p: &Processor) -> std::net::SocketAddr {
    p.ws_addr
}

/// Waits until the processor is ready, has stored a first position of `n` and serves it in a
/// snapshot of `event` (so the device-to-event map is loaded); returns that client.
async fn subscribed_after_first_fix(
    env: &TestEnv,
    p: &Processor,
    event: uuid::Uuid,
    n: u64,
    ts: i64,
) -> Client {
    env.publish(&[fix(n, ts, 0.0)]).await;
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    loop {
        let mut client = connect(ws_addr(p), None)
            .await
            .expect("anonymous clients are allowed");
        let snapshot = client.subscribe(event).await;
        if snapshot.iter().any(|pos| pos["deviceId"] == device(n)) {
            return client;
        }
        tokio::time::sleep(support::live::POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_live_positions_with_the_contract_fields() {
    let env = TestEnv::new("live_fields").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = Processor::start(&env, "a", &live_vars());
    let t0 = now_ms() - 10_000;
    let mut client = subscribed_after_first_fix(&env, &p, event, 1, t0).await;

    env.publish(&[fix(1, t0 + 1_000, 42.0)]).await;
    let position = client.next().await;
    assert_eq!(
        position,
        json!({
            "type": "position", "topic": format!("event:{event}"), "deviceId": device(1),
            "lat": 54.68, "lon": 25.28, "ts": t0 + 1_000, "speed": 42.0, "course": 270.0
        })
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_and_older_positions_are_never_sent() {
    let env = TestEnv::new("live_faulty").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = Processor::start(&env, "a", &live_vars());
    let t0 = now_ms() - 10_000;
    let mut client = subscribed_after_first_fix(&env, &p, event, 1, t0).await;

    let no_fix = fix(1, t0 + 1_000, 5.0).replace("\"satellites\":9", "\"satellites\":0");
    let null_island = fix(1, t0 + 2_000, 5.0)
        .replace("54.68", "0")
        .replace("25.28", "0");
    let older = fix(1, t0 - 5_000, 5.0);
    env.publish(&[no_fix, null_island, older, fix(1, t0 + 3_000, 7.0)])
        .await;
    let first = client.next().await;
    assert_eq!(
        first["ts"],
        json!(t0 + 3_000),
        "only the valid, newer fix is sent: {first}"
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let env = TestEnv::new("live_auth").await;
    let private = seed_event(&env, "private", &[device(1)]).await;
    let public = seed_event(&env, "public", &[device(2)]).await;
    let unknown = unique_uuid();
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;

    async fn answer(client: &mut Client, event: uuid::Uuid) -> Value {
        client
            .send(json!({"type": "subscribe", "topic": format!("event:{event}")}))
            .await;
        client.next().await
    }
    let mut anonymous = connect(p.ws_addr, None).await.expect("anonymous allowed");
    anonymous.subscribe(public).await;
    let forbidden = answer(&mut anonymous, private).await;
    let not_found = answer(&mut anonymous, unknown).await;
    assert_eq!(forbidden["code"], "forbidden");
    assert_eq!(not_found["code"], "forbidden");
    assert_eq!(
        forbidden["message"], not_found["message"],
        "an unknown event looks forbidden"
    );

    let upper = private.to_string().to_uppercase();
    let granted = token(json!({"events": [upper]}));
    let mut member = connect(p.ws_addr, Some(&granted))
        .await
        .expect("valid token");
    assert_eq!(answer(&mut member, private).await["type"], "subscribed");

    let admin = token(json!({"role": "admin"}));
    let mut admin = connect(p.ws_addr, Some(&admin)).await.expect("valid token");
    assert_eq!(answer(&mut admin, private).await["type"], "subscribed");

    let expired = token(json!({"exp": 1_000_000}));
    assert_eq!(connect(p.ws_addr, Some(&expired)).await.err(), Some(401));
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"role": "admin", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-enough-length!!!!"),
    )
    .expect("sign");
    assert_eq!(connect(p.ws_addr, Some(&forged)).await.err(), Some(401));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_bad_request_and_the_connection_stays_usable() {
    let env = TestEnv::new("live_bad_input").await;
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
    for bad in [
        "not json",
        r#"{"type":"dance"}"#,
        r#"{"type":"subscribe","topic":"event:nope"}"#,
    ] {
        client.send_text(bad).await;
        let answer = client.next().await;
        assert_eq!(answer["type"], "error", "{bad}");
        assert_eq!(answer["code"], "bad_request", "{bad}");
    }
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_instances_each_get_every_position() {
    let env = TestEnv::new("live_two").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let a = Processor::start(&env, "a", &live_vars());
    let b = Processor::start(&env, "b", &live_vars());
    let t0 = now_ms() - 10_000;
    let mut on_a = subscribed_after_first_fix(&env, &a, event, 1, t0).await;
    wait_until("b ready", || async { b.ready().await == Some(true) }).await;
    let mut on_b = connect(b.ws_addr, None).await.expect("anonymous allowed");
    on_b.subscribe(event).await;

    env.publish(&[fix(1, t0 + 1_000, 3.0)]).await;
    assert_eq!(on_a.next().await["ts"], json!(t0 + 1_000));
    assert_eq!(on_b.next().await["ts"], json!(t0 + 1_000));
    drop((a, b));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001() {
    let env = TestEnv::new("live_sigterm").await;
    let mut p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    let status = p.terminate();
    assert!(status.success());
    match client.next_frame().await {
        Frame::Closed(code) => assert_eq!(code, Some(1001)),
        Frame::Json(v) => panic!("expected the close frame, got {v}"),
    }
    env.cleanup().await;
}
