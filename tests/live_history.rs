//! Trails and resume (contract section 5.1) against real Redis, real Postgres, the real
//! `processor` binary and real WebSocket clients.

mod support;

use serde_json::{json, Value};
use uuid::Uuid;

use support::live::{connect, seed_event, store_position, Client, SECRET};
use support::{wait_until, Processor, TestEnv};

const LAT: f64 = 54.68;
const LON: f64 = 25.28;
/// About 11 m of latitude: walking pace between fixes a second apart.
const STEP: f64 = 0.0001;

fn device(n: u64) -> String {
    (356_307_050_000_000u64 + n).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
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

/// A stream payload of a valid fix.
fn fix(n: u64, ts: i64, lat: f64) -> String {
    json!({
        "device_id": device(n), "timestamp": ts, "latitude": lat, "longitude": LON,
        "satellites": 9
    })
    .to_string()
}

async fn store(env: &TestEnv, n: u64, ts: i64, lat: f64, faulty: bool) {
    store_position(env, &device(n), ts, lat, LON, faulty).await;
}

/// A device walking north, one stored fix a second for `seconds` seconds from `t0`.
async fn store_walk(env: &TestEnv, n: u64, t0: i64, seconds: i64) {
    for s in 0..seconds {
        store(env, n, t0 + s * 1_000, LAT + s as f64 * STEP, false).await;
    }
}

/// Subscribes with `extra` fields; returns the snapshot message.
async fn subscribe_with(client: &mut Client, event: Uuid, extra: Value) -> Value {
    let topic = format!("event:{event}");
    let mut msg = json!({"type": "subscribe", "topic": topic});
    for (k, v) in extra.as_object().expect("an object") {
        msg[k] = v.clone();
    }
    client.send(msg).await;
    let first = client.next().await;
    assert_eq!(first, json!({"type": "subscribed", "topic": topic}));
    let snapshot = client.next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    snapshot
}

async fn client_once_mapped(p: &Processor, event: Uuid, n: u64) -> Client {
    support::live::client_once_mapped(p, event, &device(n)).await
}

fn positions_of(snapshot: &Value, n: u64) -> Vec<&Value> {
    snapshot["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .filter(|p| p["deviceId"] == device(n))
        .collect()
}

fn trail_times(position: &Value) -> Vec<i64> {
    position["trail"]
        .as_array()
        .unwrap_or_else(|| panic!("no trail in {position}"))
        .iter()
        .map(|p| p[0].as_i64().expect("a ts"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_holds_the_window_before_each_position_without_faulty_or_jumps() {
    let env = TestEnv::new("history_trail").await;
    let event = seed_event(&env, "public", &[device(1), device(2)]).await;
    let t0 = now_ms() - 600_000;
    // Device 1: 20 s of walking; at 5 s a stored faulty row, at 8 s a jump of 1 degree.
    store_walk(&env, 1, t0, 20).await;
    env.pg()
        .await
        .execute(
            "UPDATE positions SET faulty = true WHERE device_id = $1 AND ts = $2",
            &[
                &device(1),
                &(std::time::UNIX_EPOCH + std::time::Duration::from_millis((t0 + 5_000) as u64)),
            ],
        )
        .await
        .expect("mark a faulty row");
    env.pg()
        .await
        .execute(
            "UPDATE positions SET latitude = latitude + 1 WHERE device_id = $1 AND ts = $2",
            &[
                &device(1),
                &(std::time::UNIX_EPOCH + std::time::Duration::from_millis((t0 + 8_000) as u64)),
            ],
        )
        .await
        .expect("plant a jump");
    // Device 2: one position only.
    store(&env, 2, t0, LAT, false).await;
    let p = Processor::start(&env, "a", &vars(&[]));
    let mut client = client_once_mapped(&p, event, 1).await;

    let snapshot = subscribe_with(&mut client, event, json!({"trail_s": 10})).await;
    let one = positions_of(&snapshot, 1);
    assert_eq!(one.len(), 1, "{snapshot}");
    assert_eq!(one[0]["ts"], json!(t0 + 19_000));
    // The 10 s before 19 s: 9..=18 s, none faulty or a jump there.
    let expected: Vec<i64> = (9..=18).map(|s| t0 + s * 1_000).collect();
    assert_eq!(trail_times(one[0]), expected);
    assert_eq!(
        one[0]["trail"][0],
        json!([t0 + 9_000, LAT + 9.0 * STEP, LON])
    );
    let two = positions_of(&snapshot, 2);
    assert_eq!(trail_times(two[0]), Vec::<i64>::new());

    let wide = subscribe_with(&mut client, event, json!({"trail_s": 60})).await;
    let times = trail_times(positions_of(&wide, 1)[0]);
    let expected: Vec<i64> = (0..=18)
        .filter(|s| *s != 5 && *s != 8)
        .map(|s| t0 + s * 1_000)
        .collect();
    assert_eq!(times, expected, "no faulty row, no jump");

    let plain = subscribe_with(&mut client, event, json!({})).await;
    assert!(positions_of(&plain, 1)[0].get("trail").is_none());
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_trail_is_thinned_evenly_keeping_the_oldest() {
    let env = TestEnv::new("history_thin").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let t0 = now_ms() - 600_000;
    store_walk(&env, 1, t0, 41).await;
    let p = Processor::start(&env, "a", &vars(&[("LIVE_TRAIL_MAX_POINTS", "8")]));
    let mut client = client_once_mapped(&p, event, 1).await;

    let snapshot = subscribe_with(&mut client, event, json!({"trail_s": 3_600})).await;
    let times = trail_times(positions_of(&snapshot, 1)[0]);
    // 40 earlier fixes, 8 kept: every fifth from the oldest.
    let expected: Vec<i64> = (0..8).map(|k| t0 + k * 5_000).collect();
    assert_eq!(times, expected);
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trail_s_or_since_is_a_bad_request_naming_the_field() {
    let env = TestEnv::new("history_bad").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = Processor::start(&env, "a", &vars(&[("LIVE_TRAIL_MAX_S", "600")]));
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None).await.expect("anonymous allowed");
    let topic = format!("event:{event}");
    for (field, value) in [
        ("trail_s", json!(601)),
        ("trail_s", json!(-1)),
        ("trail_s", json!("60")),
        ("since", json!(-1)),
        ("since", json!(1.5)),
    ] {
        client
            .send(json!({"type": "subscribe", "topic": topic, field: value}))
            .await;
        let answer = client.next().await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], "bad_request", "{answer}");
        assert_eq!(answer["topic"], json!(topic));
        let message = answer["message"].as_str().expect("a message");
        assert!(message.contains(&format!("`{field}`")), "{answer}");
    }
    // The connection stays usable: the largest allowed trail is granted.
    let snapshot = subscribe_with(&mut client, event, json!({"trail_s": 600})).await;
    assert_eq!(snapshot["positions"], json!([]));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_sends_every_position_after_since_then_live_without_gap_or_repeat() {
    let env = TestEnv::new("history_resume").await;
    let event = seed_event(&env, "public", &[device(1), device(2), device(3)]).await;
    let t0 = now_ms() - 60_000;
    store_walk(&env, 1, t0, 6).await;
    store_walk(&env, 2, t0, 3).await;
    // Device 3 has nothing after `since`.
    store(&env, 3, t0, LAT, false).await;
    let p = Processor::start(&env, "a", &vars(&[]));
    let mut client = client_once_mapped(&p, event, 1).await;

    let since = t0 + 1_000;
    let snapshot = subscribe_with(&mut client, event, json!({"since": since})).await;
    assert!(snapshot.get("truncated").is_none(), "{snapshot}");
    let times = |n| -> Vec<i64> {
        positions_of(&snapshot, n)
            .iter()
            .map(|p| p["ts"].as_i64().expect("ts"))
            .collect()
    };
    assert_eq!(times(1), (2..6).map(|s| t0 + s * 1_000).collect::<Vec<_>>());
    assert_eq!(times(2), vec![t0 + 2_000]);
    assert!(
        times(3).is_empty(),
        "a device with none after since is left out"
    );

    // Live positions follow: the one already in the snapshot is not repeated.
    env.publish(&[
        fix(1, t0 + 5_000, LAT + 5.0 * STEP),
        fix(1, t0 + 6_000, LAT + 6.0 * STEP),
    ])
    .await;
    let next = client.next().await;
    assert_eq!(next["type"], "position");
    assert_eq!(next["ts"], json!(t0 + 6_000), "{next}");
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_over_the_maximum_is_the_newest_per_device_and_truncated() {
    let env = TestEnv::new("history_truncated").await;
    let event = seed_event(&env, "public", &[device(1), device(2)]).await;
    let t0 = now_ms() - 60_000;
    store_walk(&env, 1, t0, 3).await;
    store_walk(&env, 2, t0, 2).await;
    let p = Processor::start(&env, "a", &vars(&[("LIVE_RESUME_MAX_POSITIONS", "4")]));
    let mut client = client_once_mapped(&p, event, 1).await;

    let truncated = subscribe_with(&mut client, event, json!({"since": t0 - 1})).await;
    assert_eq!(truncated["truncated"], json!(true), "{truncated}");
    let mut heads: Vec<(String, i64)> = truncated["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| {
            (
                p["deviceId"].as_str().unwrap_or("").to_owned(),
                p["ts"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    heads.sort();
    assert_eq!(
        heads,
        vec![(device(1), t0 + 2_000), (device(2), t0 + 1_000)]
    );

    let complete = subscribe_with(&mut client, event, json!({"since": t0})).await;
    assert!(complete.get("truncated").is_none(), "{complete}");
    assert_eq!(complete["positions"].as_array().map(Vec::len), Some(3));
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_since_misses_nothing_and_gets_nothing_twice() {
    let env = TestEnv::new("history_reconnect").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let t0 = now_ms() - 60_000;
    store(&env, 1, t0, LAT, false).await;
    let p = Processor::start(&env, "a", &vars(&[]));
    let mut first = client_once_mapped(&p, event, 1).await;
    first.subscribe(event).await;

    let mut seen = vec![t0];
    env.publish(&[
        fix(1, t0 + 1_000, LAT + STEP),
        fix(1, t0 + 2_000, LAT + 2.0 * STEP),
    ])
    .await;
    for _ in 0..2 {
        seen.push(first.next().await["ts"].as_i64().expect("ts"));
    }
    drop(first);
    // While the client is away, more positions are accepted; some are stored by the time it
    // comes back, the newest perhaps not yet: the live path's recent track has those.
    let away: Vec<String> = (3..=12)
        .map(|s| fix(1, t0 + s * 1_000, LAT + s as f64 * STEP))
        .collect();
    env.publish(&away).await;
    wait_until("the processor accepted what was sent", || async {
        p.metric("processor_live_broadcast_records_total")
            .await
            .is_some_and(|n| n >= 12.0)
    })
    .await;
    let mut second = connect(p.ws_addr, None).await.expect("anonymous allowed");
    let since = *seen.last().expect("something seen");
    let snapshot = subscribe_with(&mut second, event, json!({"since": since})).await;
    for position in positions_of(&snapshot, 1) {
        seen.push(position["ts"].as_i64().expect("ts"));
    }
    let last = (13..=14)
        .map(|s| fix(1, t0 + s * 1_000, LAT + s as f64 * STEP))
        .collect::<Vec<_>>();
    env.publish(&last).await;
    while seen.last() != Some(&(t0 + 14_000)) {
        seen.push(second.next().await["ts"].as_i64().expect("ts"));
    }
    let expected: Vec<i64> = (0..=14).map(|s| t0 + s * 1_000).collect();
    assert_eq!(seen, expected, "every position once, in order");
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_snapshot_larger_than_the_backpressure_threshold_is_delivered() {
    let env = TestEnv::new("history_big").await;
    let devices: Vec<String> = (1..=10).map(device).collect();
    let event = seed_event(&env, "public", &devices).await;
    let t0 = now_ms() - 600_000;
    for n in 1..=10 {
        store_walk(&env, n, t0, 101).await;
    }
    let p = Processor::start(
        &env,
        "a",
        &vars(&[
            ("LIVE_WS_CONFLATE_THRESHOLD_BYTES", "1024"),
            ("LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES", "4096"),
        ]),
    );
    let mut client = client_once_mapped(&p, event, 1).await;
    // Ten devices with 100 trail points each: some 40 KB, ten times the threshold.
    let snapshot = subscribe_with(&mut client, event, json!({"trail_s": 3_600})).await;
    assert!(snapshot.to_string().len() > 4 * 4_096);
    for n in 1..=10 {
        assert_eq!(trail_times(positions_of(&snapshot, n)[0]).len(), 100);
    }
    // The connection is still usable.
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
    drop(p);
    env.cleanup().await;
}

/// Devices of snapshots answered from memory and from Postgres so far.
async fn snapshot_sources(p: &Processor) -> (f64, f64) {
    let memory = p
        .metric("processor_live_snapshot_memory_devices_total")
        .await
        .expect("the metric is exported");
    let postgres = p
        .metric("processor_live_snapshot_postgres_devices_total")
        .await
        .expect("the metric is exported");
    (memory, postgres)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_instance_saw_is_answered_from_memory_as_postgres_answers_it() {
    let env = TestEnv::new("history_memory").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    // An old stored fix puts the device on the map; memory never saw it.
    store(&env, 1, now_ms() - 600_000, LAT, false).await;
    // No future allowance: every fix read after the start is known complete.
    let settings = vars(&[("FAULTY_MAX_FUTURE_MS", "0")]);
    let p = Processor::start(&env, "a", &settings);
    let mut client = client_once_mapped(&p, event, 1).await;

    // Fixes at the wall time they are sent (a device standing still), over more than a
    // second of it, so that a one-second trail lies wholly within what memory saw.
    let first = now_ms();
    let mut times = vec![first];
    env.publish(&[fix(1, first, LAT)]).await;
    while *times.last().expect("one") < first + 1_500 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ts = now_ms().max(times.last().expect("one") + 1);
        env.publish(&[fix(1, ts, LAT)]).await;
        times.push(ts);
    }
    let newest = *times.last().expect("one");
    wait_until("the processor read every fix", || async {
        p.metric("processor_live_broadcast_records_total")
            .await
            .is_some_and(|n| n >= times.len() as f64)
    })
    .await;

    let before = snapshot_sources(&p).await;
    let trail = subscribe_with(&mut client, event, json!({"trail_s": 1})).await;
    let resume = subscribe_with(&mut client, event, json!({"since": first})).await;
    let latest = subscribe_with(&mut client, event, json!({})).await;
    let after = snapshot_sources(&p).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (3.0, 0.0),
        "three snapshots of one device, all from memory"
    );
    let trail_expected: Vec<i64> = times
        .iter()
        .copied()
        .filter(|&t| t >= newest - 1_000 && t < newest)
        .collect();
    assert_eq!(positions_of(&trail, 1)[0]["ts"], json!(newest));
    assert_eq!(trail_times(positions_of(&trail, 1)[0]), trail_expected);
    let resumed: Vec<i64> = positions_of(&resume, 1)
        .iter()
        .map(|p| p["ts"].as_i64().expect("ts"))
        .collect();
    assert_eq!(resumed, times[1..].to_vec());
    assert_eq!(positions_of(&latest, 1)[0]["ts"], json!(newest));

    // Once stored, a new instance (memory empty) reads the same from Postgres.
    let stored = times.len() as i64 + 1;
    wait_until("every fix stored", || async {
        env.count("SELECT count(*) FROM positions").await >= stored
    })
    .await;
    drop(client);
    drop(p);
    let p = Processor::start(&env, "b", &settings);
    let mut client = client_once_mapped(&p, event, 1).await;
    let before = snapshot_sources(&p).await;
    let trail_again = subscribe_with(&mut client, event, json!({"trail_s": 1})).await;
    let resume_again = subscribe_with(&mut client, event, json!({"since": first})).await;
    let after = snapshot_sources(&p).await;
    assert_eq!(after.1 - before.1, 2.0, "both from Postgres");
    assert_eq!(trail_again["positions"], trail["positions"]);
    assert_eq!(resume_again["positions"], resume["positions"]);
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_of_more_devices_than_one_statement_reads_is_read_whole_from_postgres() {
    let env = TestEnv::new("history_many").await;
    // More devices than two trail statements take (200 each), so the read is split over
    // two connections, each with more than one statement.
    let devices: Vec<String> = (1..=450).map(device).collect();
    let event = seed_event(&env, "public", &devices).await;
    let t0 = now_ms() - 600_000;
    // Device n: fixes at 0..=n%4 s, walking north; its newest is at (n % 4) s.
    env.pg()
        .await
        .execute(
            "INSERT INTO positions (device_id, ts, latitude, longitude, altitude, angle, speed,
                 satellites, priority, faulty, received_at)
             SELECT d, to_timestamp(0) + ($1::int8 + s * 1000) * interval '1 millisecond',
                    $2::float8 + s * $3::float8, $4::float8, 0, 0,
                    0, 9, 0, false, now()
             FROM unnest($5::text[]) WITH ORDINALITY AS u(d, n),
                  generate_series(0, n % 4) AS s",
            &[&t0, &LAT, &STEP, &LON, &devices],
        )
        .await
        .expect("store the fixes");
    let p = Processor::start(&env, "a", &vars(&[]));
    let mut client = client_once_mapped(&p, event, 450).await;
    let before = snapshot_sources(&p).await;
    let snapshot = subscribe_with(&mut client, event, json!({"trail_s": 60})).await;
    let after = snapshot_sources(&p).await;
    assert_eq!(after.1 - before.1, 450.0, "every device from Postgres");
    for n in 1..=450u64 {
        let newest = (n % 4) as i64;
        let one = positions_of(&snapshot, n);
        assert_eq!(one.len(), 1, "device {n}");
        assert_eq!(one[0]["ts"], json!(t0 + newest * 1_000), "device {n}");
        let expected: Vec<i64> = (0..newest).map(|s| t0 + s * 1_000).collect();
        assert_eq!(trail_times(one[0]), expected, "device {n}");
    }
    drop(p);
    env.cleanup().await;
}
