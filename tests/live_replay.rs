//! Paced replay (contract section 5.1) against real Postgres, Redis, the real `processor`
//! binary and real WebSocket clients. Speeds are high so that the tests are quick; what is
//! checked is what is sent and in which order, never how long it took.

mod support;

use serde_json::{json, Value};
use uuid::Uuid;

use support::live::{seed_event, store_position, Client, SECRET};
use support::{Processor, TestEnv};

const T0: i64 = 1_764_324_000_000;

fn device(n: u64) -> String {
    (356_307_070_000_000u64 + n).to_string()
}

async fn store(env: &TestEnv, n: u64, ts: i64, faulty: bool) {
    store_position(env, &device(n), ts, 54.68, 25.28, faulty).await;
}

async fn client_once_mapped(p: &Processor, event: Uuid, n: u64) -> Client {
    support::live::client_once_mapped(p, event, &device(n)).await
}

fn replay(id: &str, event: Uuid, from: i64, to: i64, speed: f64) -> Value {
    json!({"type": "replay", "id": id, "event": event.to_string(), "from": from, "to": to,
           "speed": speed})
}

/// `(deviceId, ts - T0)` of the messages up to `replay_end` (which is checked).
async fn played_to_the_end(client: &mut Client, topic: &str) -> Vec<(String, i64)> {
    let mut played = Vec::new();
    loop {
        let message = client.next().await;
        assert_eq!(message["topic"], topic, "{message}");
        match message["type"].as_str() {
            Some("position") => played.push((
                message["deviceId"].as_str().unwrap_or("").to_owned(),
                message["ts"].as_i64().unwrap_or(0) - T0,
            )),
            Some("replay_end") => return played,
            _ => panic!("unexpected {message}"),
        }
    }
}

fn snapshot_of(message: &Value) -> Vec<(String, i64)> {
    assert_eq!(message["type"], "snapshot", "{message}");
    message["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| {
            (
                p["deviceId"].as_str().unwrap_or("").to_owned(),
                p["ts"].as_i64().unwrap_or(0) - T0,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_sends_the_snapshot_at_from_then_every_position_in_order_then_replay_end() {
    let env = TestEnv::new("replay_order").await;
    let event = seed_event(&env, "public", &[device(1), device(2)]).await;
    store(&env, 1, T0 - 5_000, false).await;
    store(&env, 1, T0, false).await;
    store(&env, 2, T0 - 1_000, false).await;
    for s in 1..=30 {
        store(&env, 1, T0 + s * 1_000, s == 7).await;
        if s % 3 == 0 {
            store(&env, 2, T0 + s * 1_000, false).await;
        }
    }
    let p = Processor::start(
        &env,
        "a",
        &[
            ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
            // Several pages.
            ("LIVE_REPLAY_READ_AHEAD", "8".to_owned()),
        ],
    );
    let mut client = client_once_mapped(&p, event, 1).await;
    client
        .send(replay("r1", event, T0, T0 + 25_000, 1_000.0))
        .await;
    assert_eq!(
        client.next().await,
        json!({"type": "subscribed", "topic": "replay:r1"})
    );
    let mut snapshot = snapshot_of(&client.next().await);
    snapshot.sort();
    assert_eq!(snapshot, vec![(device(1), 0), (device(2), -1_000)]);
    let played = played_to_the_end(&mut client, "replay:r1").await;
    let mut expected = Vec::new();
    for s in 1..=25 {
        if s != 7 {
            expected.push((device(1), s * 1_000));
        }
        if s % 3 == 0 {
            expected.push((device(2), s * 1_000));
        }
    }
    assert_eq!(played, expected, "non-faulty, from < ts <= to, in ts order");
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_seek_and_speed_steer_a_replay() {
    let env = TestEnv::new("replay_control").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    for s in 0..=100 {
        store(&env, 1, T0 + s * 1_000, false).await;
    }
    let p = Processor::start(
        &env,
        "a",
        &[
            ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
        ],
    );
    let mut client = client_once_mapped(&p, event, 1).await;
    // Slow enough never to reach the next position while the test runs on.
    client.send(replay("r", event, T0, T0 + 100_000, 0.1)).await;
    assert_eq!(client.next().await["type"], "subscribed");
    assert_eq!(snapshot_of(&client.next().await), vec![(device(1), 0)]);
    client
        .send(json!({"type": "replay_control", "id": "r", "paused": true, "speed": 1000}))
        .await;
    // Seek near the end: a new snapshot there, then the rest at the new speed once resumed.
    client
        .send(json!({"type": "replay_control", "id": "r", "seek": T0 + 95_000}))
        .await;
    assert_eq!(snapshot_of(&client.next().await), vec![(device(1), 95_000)]);
    client
        .send(json!({"type": "replay_control", "id": "r", "paused": false}))
        .await;
    let played = played_to_the_end(&mut client, "replay:r").await;
    let expected: Vec<(String, i64)> = (96..=100).map(|s| (device(1), s * 1_000)).collect();
    assert_eq!(played, expected);
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_over_the_limits_or_of_a_private_event_are_refused() {
    let env = TestEnv::new("replay_limits").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let private = seed_event(&env, "private", &[device(2)]).await;
    store(&env, 1, T0, false).await;
    let p = Processor::start(
        &env,
        "a",
        &[
            ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
            ("LIVE_REPLAY_MAX_PER_CONNECTION", "1".to_owned()),
        ],
    );
    let mut client = client_once_mapped(&p, event, 1).await;
    client
        .send(replay("a", event, T0, T0 + 3_600_000, 0.1))
        .await;
    assert_eq!(client.next().await["type"], "subscribed");
    assert_eq!(client.next().await["type"], "snapshot");
    client.send(replay("b", event, T0, T0 + 1_000, 1.0)).await;
    let refused = client.next().await;
    assert_eq!(refused["code"], "limit_exceeded", "{refused}");
    assert_eq!(refused["topic"], "replay:b");
    client
        .send(json!({"type": "unsubscribe", "topic": "replay:a"}))
        .await;
    assert_eq!(
        client.next().await,
        json!({"type": "unsubscribed", "topic": "replay:a"})
    );
    client.send(replay("c", private, T0, T0 + 1_000, 1.0)).await;
    let forbidden = client.next().await;
    assert_eq!(forbidden["code"], "forbidden", "{forbidden}");
    assert_eq!(forbidden["topic"], "replay:c");
    client
        .send(
            json!({"type": "replay", "id": "d", "event": event.to_string(), "from": T0,
                     "to": T0 - 1, "speed": 1}),
        )
        .await;
    let bad = client.next().await;
    assert_eq!(bad["code"], "bad_request");
    assert!(
        bad["message"].as_str().unwrap_or("").contains("`to`"),
        "{bad}"
    );
    drop(p);
    env.cleanup().await;
}

/// `ts - T0` of the trail of the snapshot's only position of device `n`.
fn trail_of(message: &Value, n: u64) -> Vec<i64> {
    let positions = message["positions"].as_array().expect("positions");
    let position = positions
        .iter()
        .find(|p| p["deviceId"] == device(n))
        .unwrap_or_else(|| panic!("device {n} in {message}"));
    position["trail"]
        .as_array()
        .unwrap_or_else(|| panic!("a trail in {position}"))
        .iter()
        .map(|point| point[0].as_i64().unwrap_or(0) - T0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_trail_s_has_trails_in_its_snapshots_as_they_were_then() {
    let env = TestEnv::new("replay_trail").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    for s in 0..=60 {
        store(&env, 1, T0 + s * 1_000, s == 4).await;
    }
    let p = Processor::start(
        &env,
        "a",
        &[
            ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
            ("LIVE_TRAIL_MAX_S", "30".to_owned()),
        ],
    );
    let mut client = client_once_mapped(&p, event, 1).await;
    let mut request = replay("r", event, T0 + 10_000, T0 + 60_000, 0.1);
    request["trail_s"] = json!(5);
    client.send(request).await;
    assert_eq!(client.next().await["type"], "subscribed");
    let snapshot = client.next().await;
    assert_eq!(snapshot_of(&snapshot), vec![(device(1), 10_000)]);
    // The 5 s before 10 s, the faulty fix at 4 s left out; nothing after `from`.
    assert_eq!(
        trail_of(&snapshot, 1),
        vec![5_000, 6_000, 7_000, 8_000, 9_000]
    );
    client
        .send(json!({"type": "replay_control", "id": "r", "seek": T0 + 40_500}))
        .await;
    let sought = client.next().await;
    assert_eq!(snapshot_of(&sought), vec![(device(1), 40_000)]);
    assert_eq!(
        trail_of(&sought, 1),
        vec![35_000, 36_000, 37_000, 38_000, 39_000]
    );

    let mut too_long = replay("r2", event, T0, T0 + 1_000, 1.0);
    too_long["trail_s"] = json!(31);
    client.send(too_long).await;
    let refused = client.next().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "bad_request");
    assert_eq!(refused["topic"], "replay:r2");
    drop(p);
    env.cleanup().await;
}
