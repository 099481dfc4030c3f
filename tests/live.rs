//! The live path against real Redis, real Postgres, the real `processor` binary and real
//! WebSocket clients.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;

use support::live::{
    add_device, add_entry, connect, connect_with_small_receive_buffer, seed_event, token,
    unique_uuid, Client, Frame, POLL, SECRET,
};
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

/// A valid, non-faulty position payload at a chosen place.
fn fix_at(n: u64, ts: i64, lat: f64, lon: f64, speed: f64, angle: f64) -> String {
    json!({
        "device_id": device(n), "timestamp": ts, "latitude": lat, "longitude": lon,
        "speed": speed, "angle": angle, "satellites": 9
    })
    .to_string()
}

fn with(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut vars = live_vars();
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    vars
}

fn topic(event: uuid::Uuid) -> String {
    format!("event:{event}")
}

async fn metric(p: &Processor, name: &str) -> f64 {
    p.metric(name)
        .await
        .unwrap_or_else(|| panic!("the metrics endpoint serves {name}"))
}

/// Waits until `name` reaches at least `at_least`; returns its value then.
async fn metric_reaches(p: &Processor, name: &str, at_least: f64) -> f64 {
    wait_until(&format!("{name} >= {at_least}"), || async {
        p.metric(name).await.is_some_and(|v| v >= at_least)
    })
    .await;
    metric(p, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_over_the_limit_gets_limit_exceeded() {
    let env = TestEnv::new("live_sub_limit").await;
    let e1 = seed_event(&env, "public", &[device(1)]).await;
    let e2 = seed_event(&env, "public", &[device(2)]).await;
    let e3 = seed_event(&env, "public", &[device(3)]).await;
    let p = Processor::start(&env, "a", &with(&[("LIVE_WS_MAX_SUBSCRIPTIONS", "2")]));
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
    client.subscribe(e1).await;
    client.subscribe(e2).await;

    client
        .send(json!({"type": "subscribe", "topic": topic(e3)}))
        .await;
    let answer = client.next().await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "limit_exceeded", "{answer}");
    assert_eq!(answer["topic"], topic(e3), "{answer}");
    assert!(answer["message"].is_string(), "{answer}");

    // Subscribing again to a topic it holds is not one topic more.
    client.subscribe(e1).await;
    // With one topic given up, the third one fits.
    client
        .send(json!({"type": "unsubscribe", "topic": topic(e2)}))
        .await;
    assert_eq!(
        client.next().await,
        json!({"type": "unsubscribed", "topic": topic(e2)})
    );
    client.subscribe(e3).await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_bad_requests_close_the_connection_with_1008() {
    let env = TestEnv::new("live_bad_limit").await;
    let p = Processor::start(&env, "a", &with(&[("LIVE_WS_MAX_BAD_MESSAGES", "3")]));
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
    for bad in ["not json", r#"{"type":"dance"}"#] {
        client.send_text(bad).await;
        assert_eq!(client.next().await["code"], "bad_request", "{bad}");
    }
    client.send(json!({"type": "ping"})).await;
    assert_eq!(
        client.next().await,
        json!({"type": "pong"}),
        "two bad requests leave the connection usable"
    );

    client
        .send_text(r#"{"type":"subscribe","topic":"event:nope"}"#)
        .await;
    let mut answers = Vec::new();
    let code = loop {
        match client.next_frame().await {
            Frame::Json(v) => answers.push(v),
            Frame::Closed(code) => break code,
        }
    };
    assert_eq!(code, Some(1008), "closed after the third bad request");
    assert!(
        answers.iter().all(|a| a["code"] == "bad_request"),
        "nothing but the answer to the third bad request before the close: {answers:?}"
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_of_a_topic_not_subscribed_is_answered_unsubscribed() {
    let env = TestEnv::new("live_unsub").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");

    let never = unique_uuid();
    client
        .send(json!({"type": "unsubscribe", "topic": topic(never)}))
        .await;
    assert_eq!(
        client.next().await,
        json!({"type": "unsubscribed", "topic": topic(never)})
    );

    client.subscribe(event).await;
    for _ in 0..2 {
        client
            .send(json!({"type": "unsubscribe", "topic": topic(event)}))
            .await;
        assert_eq!(
            client.next().await,
            json!({"type": "unsubscribed", "topic": topic(event)}),
            "unsubscribing twice is answered twice"
        );
    }
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_in_no_event_is_counted_orphan_and_reaches_nobody() {
    let env = TestEnv::new("live_orphan").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = Processor::start(&env, "a", &live_vars());
    let t0 = now_ms() - 10_000;
    let mut client = subscribed_after_first_fix(&env, &p, event, 1, t0).await;
    wait_until("one client left", || async {
        p.metric("processor_live_connections").await == Some(1.0)
    })
    .await;
    const ORPHANS: &str = "processor_live_broadcast_orphan_records_total";
    const FANOUT: &str = "processor_live_broadcast_fanout_messages_total";
    let orphans = metric(&p, ORPHANS).await;
    let fanout = metric(&p, FANOUT).await;

    // The orphan goes first; the event's own device after it marks the end.
    env.publish(&[fix(99, t0 + 1_000, 5.0), fix(1, t0 + 1_000, 5.0)])
        .await;
    let first = client.next().await;
    assert_eq!(
        first["deviceId"],
        device(1),
        "the orphan is not sent: {first}"
    );
    assert_eq!(first["ts"], json!(t0 + 1_000));

    assert_eq!(
        metric_reaches(&p, ORPHANS, orphans + 1.0).await,
        orphans + 1.0
    );
    assert_eq!(
        metric_reaches(&p, FANOUT, fanout + 1.0).await,
        fanout + 1.0,
        "one position message went out: the event's device's"
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_to_an_event_at_run_time_reaches_its_subscribers() {
    let env = TestEnv::new("live_map_refresh").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = Processor::start(&env, "a", &live_vars());
    let t0 = now_ms() - 60_000;
    let mut client = subscribed_after_first_fix(&env, &p, event, 1, t0).await;

    // Not in the event yet: device 2's fix is not sent; device 1's after it marks the end.
    env.publish(&[fix(2, t0 + 10, 0.0), fix(1, t0 + 10, 0.0)])
        .await;
    let first = client.next().await;
    assert_eq!(first["deviceId"], device(1), "{first}");

    let entry = add_entry(&env, event).await;
    add_device(&env, entry, &device(2)).await;
    let max_rounds = support::PATIENCE.as_millis() / POLL.as_millis();
    let mut round = 1;
    let found = 'rounds: loop {
        assert!(
            round < max_rounds,
            "device 2 never reached the event's subscriber"
        );
        round += 1;
        let ts = t0 + 10 * round as i64;
        env.publish(&[fix(2, ts, 0.0), fix(1, ts, 0.0)]).await;
        loop {
            let message = client.next().await;
            assert_eq!(message["type"], "position", "{message}");
            assert_eq!(
                message["ts"],
                json!(ts),
                "only this round's fixes: {message}"
            );
            if message["deviceId"] == device(2) {
                break 'rounds message;
            }
            if message["deviceId"] == device(1) {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(found["topic"], topic(event));

    // From now on every fix of device 2 is sent.
    let ts = t0 + 10 * (round as i64 + 1);
    env.publish(&[fix(2, ts, 0.0)]).await;
    let mut next = client.next().await;
    if next["deviceId"] == device(1) {
        // The marker of the round in which device 2 showed up.
        next = client.next().await;
    }
    assert_eq!(next["deviceId"], device(2), "{next}");
    assert_eq!(next["ts"], json!(ts));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_has_the_newest_stored_non_faulty_fix_per_device_of_the_event() {
    let env = TestEnv::new("live_snapshot").await;
    let a = seed_event(&env, "public", &[device(1), device(2), device(3)]).await;
    let b = seed_event(&env, "public", &[device(4)]).await;
    let t0 = now_ms() - 60_000;
    let no_fix = |p: String| p.replace("\"satellites\":9", "\"satellites\":0");
    // Published before the processor runs: the snapshot can come only from Postgres.
    let payloads = vec![
        fix_at(1, t0, 54.1, 25.1, 10.0, 90.0),
        fix_at(1, t0 + 2_000, 54.3, 25.3, 12.5, 180.0),
        fix_at(1, t0 + 1_000, 54.2, 25.2, 11.0, 90.0),
        no_fix(fix_at(1, t0 + 3_000, 54.4, 25.4, 13.0, 90.0)),
        fix_at(1, t0 + 4_000, 0.0, 0.0, 13.0, 90.0),
        fix_at(2, t0 + 500, 54.5, 25.5, 0.0, 0.0),
        no_fix(fix_at(2, t0 + 600, 54.6, 25.6, 1.0, 1.0)),
        fix_at(4, t0 + 9_000, 55.0, 26.0, 30.0, 45.0),
    ];
    let n = payloads.len() as i64;
    env.publish(&payloads).await;
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("every fix stored", || async {
        env.count("SELECT count(*) FROM positions").await == n
    })
    .await;

    // Every row is stored: the first snapshot with anything in it (the device map is
    // loaded) is the whole answer.
    let (mut client, snapshot) = loop {
        let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
        let snapshot = client.subscribe(a).await;
        if !snapshot.is_empty() {
            break (client, snapshot);
        }
        tokio::time::sleep(POLL).await;
    };
    let by_device = |mut positions: Vec<Value>| {
        positions.sort_by_key(|p| p["deviceId"].as_str().map(str::to_owned));
        positions
    };
    assert_eq!(
        by_device(snapshot),
        vec![
            json!({"deviceId": device(1), "lat": 54.3, "lon": 25.3, "ts": t0 + 2_000,
                   "speed": 12.5, "course": 180.0}),
            json!({"deviceId": device(2), "lat": 54.5, "lon": 25.5, "ts": t0 + 500}),
        ],
        "newest non-faulty fix per device; none for a device never seen; none of event b"
    );
    let mut other = connect(p.ws_addr, None).await.expect("anonymous allowed");
    assert_eq!(
        other.subscribe(b).await,
        vec![
            json!({"deviceId": device(4), "lat": 55.0, "lon": 26.0, "ts": t0 + 9_000,
                    "speed": 30.0, "course": 45.0})
        ]
    );

    // A fix accepted live is in the next snapshot, stored yet or not.
    env.publish(&[fix_at(2, t0 + 7_000, 54.7, 25.7, 5.0, 10.0)])
        .await;
    let live = client.next().await;
    assert_eq!(live["ts"], json!(t0 + 7_000), "{live}");
    let mut late = connect(p.ws_addr, None).await.expect("anonymous allowed");
    assert_eq!(
        by_device(late.subscribe(a).await),
        vec![
            json!({"deviceId": device(1), "lat": 54.3, "lon": 25.3, "ts": t0 + 2_000,
                   "speed": 12.5, "course": 180.0}),
            json!({"deviceId": device(2), "lat": 54.7, "lon": 25.7, "ts": t0 + 7_000,
                   "speed": 5.0, "course": 10.0}),
        ]
    );
    drop(p);
    env.cleanup().await;
}

/// A processor conflating over 2,000 queued bytes and closing over `backpressure`, with one
/// public event carrying devices 1..=`devices`; returns it with the fix time to start from.
async fn slow_consumer_setup(
    name: &str,
    devices: u64,
    backpressure: &str,
) -> (TestEnv, Processor, uuid::Uuid, i64) {
    let env = TestEnv::new(name).await;
    let ids: Vec<String> = (1..=devices).map(device).collect();
    let event = seed_event(&env, "public", &ids).await;
    let p = Processor::start(
        &env,
        "a",
        &with(&[
            ("LIVE_WS_CONFLATE_THRESHOLD_BYTES", "2000"),
            ("LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES", backpressure),
        ]),
    );
    (env, p, event, now_ms() - 3_600_000)
}

/// Records a position message's fix time for its device; fails if it is not newer.
fn newer(last: &mut BTreeMap<String, i64>, message: &Value) {
    assert_eq!(message["type"], "position", "{message}");
    let d = message["deviceId"].as_str().expect("deviceId").to_owned();
    let ts = message["ts"].as_i64().expect("ts");
    if let Some(before) = last.insert(d.clone(), ts) {
        assert!(before < ts, "{d}: {ts} after {before}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_closed_with_1013_and_a_fast_one_gets_everything() {
    const DEVICES: u64 = 400;
    const CHUNK: u64 = 50;
    const MAX_ROUNDS: u64 = 4_000;
    const CLOSES: &str = "processor_live_slow_consumer_closes_total";
    // A round (CHUNK fixes of distinct devices, about 8 KB) fits the fast client's buffer
    // twice over below the back-pressure threshold; the slow client's parked fixes, one per
    // device, do not.
    let (env, p, event, t0) = slow_consumer_setup("live_slow", DEVICES, "40000").await;
    let mut fast = subscribed_after_first_fix(&env, &p, event, 1, t0).await;
    let mut slow = connect_with_small_receive_buffer(p.ws_addr, 4_096).await;
    slow.subscribe(event).await;
    // From here on `slow` is not read until the end.

    let mut published: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut received: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut round = 0;
    loop {
        assert!(
            round < MAX_ROUNDS,
            "the slow client was not closed after {} fixes",
            round * CHUNK
        );
        let ts = t0 + 10 * (round as i64 + 1);
        let payloads: Vec<String> = (0..CHUNK)
            .map(|i| {
                let n = (round * CHUNK + i) % DEVICES + 1;
                published.entry(device(n)).or_default().push(ts);
                fix(n, ts, 0.0)
            })
            .collect();
        env.publish(&payloads).await;
        for _ in 0..CHUNK {
            let message = fast.next().await;
            assert_eq!(message["type"], "position", "{message}");
            let d = message["deviceId"].as_str().expect("deviceId").to_owned();
            let ts = message["ts"].as_i64().expect("ts");
            received.entry(d).or_default().push(ts);
        }
        round += 1;
        if metric(&p, CLOSES).await >= 1.0 {
            break;
        }
    }
    assert_eq!(
        received, published,
        "the fast client gets every fix, in order, after {round} rounds"
    );

    // The slow client finds what was written before the close, in order, then 1013.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut got = 0;
    let code = loop {
        match slow.next_frame().await {
            Frame::Json(message) => {
                newer(&mut last, &message);
                got += 1;
            }
            Frame::Closed(code) => break code,
        }
    };
    assert_eq!(code, Some(1013), "slow client closed after {got} positions");
    assert!(
        got < round * CHUNK,
        "the slow client was not sent everything"
    );
    fast.send(json!({"type": "ping"})).await;
    assert_eq!(
        fast.next().await,
        json!({"type": "pong"}),
        "the fast client stays"
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_bad_request_under_64_kib_and_1009_over() {
    let env = TestEnv::new("live_too_large").await;
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;

    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
    let padded = json!({"type": "ping", "pad": "x".repeat(5_000)}).to_string();
    client.send_text(&padded).await;
    let answer = client.next().await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    client.send(json!({"type": "ping"})).await;
    assert_eq!(
        client.next().await,
        json!({"type": "pong"}),
        "the connection stays usable"
    );

    client.send_text(&"x".repeat(70 * 1024)).await;
    match client.next_frame().await {
        Frame::Closed(code) => assert_eq!(code, Some(1009)),
        Frame::Json(v) => panic!("expected a close with 1009, got {v}"),
    }

    // Over 64 KiB in two frames of 40 KB each, both under the limit alone.
    let mut fragmented = connect(p.ws_addr, None).await.expect("anonymous allowed");
    let part = "y".repeat(40_000);
    fragmented
        .send_raw(Message::Frame(WsFrame::message(
            part.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await;
    fragmented
        .send_raw(Message::Frame(WsFrame::message(
            part,
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    match fragmented.next_frame().await {
        Frame::Closed(code) => assert_eq!(code, Some(1009)),
        Frame::Json(v) => panic!("expected a close with 1009, got {v}"),
    }
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_page_and_the_public_event_list_are_served_beside_live() {
    let env = TestEnv::new("map_page").await;
    let public = seed_event(&env, "public", &[device(90)]).await;
    let private = seed_event(&env, "private", &[device(91)]).await;
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;

    let (status, head, body) = support::http_get(p.ws_addr, "/").await.expect("GET /");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(
        body.contains("<canvas") && body.contains("map.js"),
        "{body}"
    );
    for (asset, kind) in [("/map.js", "text/javascript"), ("/map.css", "text/css")] {
        let (status, head, body) = support::http_get(p.ws_addr, asset)
            .await
            .expect("GET asset");
        assert_eq!(status, 200, "{asset}");
        assert!(head.contains(kind), "{asset}: {head}");
        assert!(body.len() > 100, "{asset} is served whole");
    }

    let (status, head, body) = support::http_get(p.ws_addr, "/events")
        .await
        .expect("GET /events");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let events: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!(
        events,
        vec![json!({"id": public.to_string(), "name": "test", "starts_at": null, "ends_at": null})]
    );
    assert!(
        !body.contains(&private.to_string()),
        "private events are not listed"
    );

    let (status, _, _) = support::http_get(p.ws_addr, "/nothing-here")
        .await
        .expect("GET");
    assert_eq!(status, 404);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_conflated_and_catches_up_to_the_newest_fixes() {
    const DEVICES: u64 = 20;
    const ROUNDS_PER_BATCH: u64 = 50;
    const MAX_BATCHES: u64 = 400;
    const CONFLATED: &str = "processor_live_conflated_messages_total";
    // Parked fixes, one per device, stay far below the back-pressure threshold: this client
    // is conflated, never closed.
    let (env, p, event, t0) = slow_consumer_setup("live_conflate", DEVICES, "1000000").await;
    // Only to know the map is loaded; gone before the traffic, so that `slow` is the one
    // subscriber.
    drop(subscribed_after_first_fix(&env, &p, event, 1, t0).await);
    let mut slow = connect_with_small_receive_buffer(p.ws_addr, 4_096).await;
    slow.subscribe(event).await;
    // From here on `slow` is not read until positions were conflated.

    let mut ts = t0;
    let mut published = 0u64;
    let mut batches = 0;
    while metric(&p, CONFLATED).await < 1.0 {
        assert!(
            batches < MAX_BATCHES,
            "nothing conflated after {published} fixes"
        );
        let mut payloads = Vec::new();
        for _ in 0..ROUNDS_PER_BATCH {
            ts += 10;
            payloads.extend((1..=DEVICES).map(|n| fix(n, ts, 0.0)));
        }
        published += payloads.len() as u64;
        env.publish(&payloads).await;
        batches += 1;
    }
    let newest = ts;

    // Reading again, the client gets each device's fixes in order and ends at its newest.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut got = 0u64;
    while last.len() < DEVICES as usize || last.values().any(|t| *t < newest) {
        newer(&mut last, &slow.next().await);
        got += 1;
    }
    assert!(
        got < published,
        "conflation sent fewer than the {published} fixes ({got})"
    );
    assert_eq!(
        metric(&p, "processor_live_slow_consumer_closes_total").await,
        0.0
    );
    // Each fix published after `slow` subscribed was a delivery to it, sent or conflated;
    // both subscriptions got a snapshot.
    metric_reaches(
        &p,
        "processor_live_position_deliveries_total",
        published as f64,
    )
    .await;
    metric_reaches(&p, "processor_live_snapshots_total", 2.0).await;
    drop(p);
    env.cleanup().await;
}
