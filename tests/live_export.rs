//! Track export, `GET /events/<uuid>/tracks` (contract section 5.1), against real Postgres,
//! Redis and the real `processor` binary.

mod support;

use serde_json::{json, Value};

use support::live::{seed_event, token, unique_uuid, SECRET};
use support::{http_get, wait_until, Processor, TestEnv};

fn device(n: u64) -> String {
    (356_307_060_000_000u64 + n).to_string()
}

const T0: i64 = 1_764_324_000_000;

fn vars() -> Vec<(&'static str, String)> {
    vec![("LIVE_AUTH_JWT_SECRET", SECRET.to_owned())]
}

async fn store(env: &TestEnv, n: u64, ts: i64, lat: f64, lon: f64, faulty: bool) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts as u64);
    env.pg()
        .await
        .execute(
            "INSERT INTO positions (device_id, ts, latitude, longitude, altitude, angle, speed,
                 satellites, priority, faulty, received_at)
             VALUES ($1, $2, $3, $4, 0, 0, 0, 9, 0, $5, now())",
            &[&device(n), &at, &lat, &lon, &faulty],
        )
        .await
        .expect("insert a position");
}

async fn started(env: &TestEnv) -> Processor {
    let p = Processor::start(env, "a", &vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geojson_has_one_linestring_per_device_of_its_non_faulty_positions_in_the_window() {
    let env = TestEnv::new("export_geojson").await;
    let event = seed_event(&env, "public", &[device(1), device(2), device(3)]).await;
    for s in 0..5 {
        store(
            &env,
            1,
            T0 + s * 1_000,
            54.0 + s as f64 / 100.0,
            25.5,
            s == 2,
        )
        .await;
    }
    store(&env, 2, T0 + 1_500, 1.25, 2.5, false).await;
    // Outside the window, and a device of no entry of the event.
    store(&env, 2, T0 + 10_000, 1.5, 2.5, false).await;
    store(&env, 9, T0 + 1_000, 3.5, 4.5, false).await;
    let p = started(&env).await;

    let path = format!(
        "/events/{event}/tracks?from={}&to={}",
        T0 + 1_000,
        T0 + 4_000
    );
    let (status, head, body) = http_get(p.ws_addr, &path).await.expect("a response");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("content-type: application/geo+json"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        doc,
        json!({"type": "FeatureCollection", "features": [
            {"type": "Feature",
             "geometry": {"type": "LineString",
                          "coordinates": [[25.5, 54.01], [25.5, 54.03], [25.5, 54.04]]},
             "properties": {"deviceId": device(1),
                            "timestamps": [T0 + 1_000, T0 + 3_000, T0 + 4_000]}},
            {"type": "Feature",
             // One position: twice, as RFC 7946 wants two or more in a LineString.
             "geometry": {"type": "LineString", "coordinates": [[2.5, 1.25], [2.5, 1.25]]},
             "properties": {"deviceId": device(2), "timestamps": [T0 + 1_500, T0 + 1_500]}},
        ]})
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpx_has_one_trk_per_device() {
    let env = TestEnv::new("export_gpx").await;
    let event = seed_event(&env, "public", &[device(1), device(2)]).await;
    store(&env, 1, T0, 54.5, 25.25, false).await;
    store(&env, 1, T0 + 1_000, 54.75, 25.25, false).await;
    store(&env, 2, T0 + 123, 1.5, 2.5, false).await;
    let p = started(&env).await;

    let path = format!(
        "/events/{event}/tracks?from={T0}&to={}&format=gpx",
        T0 + 1_000
    );
    let (status, head, body) = http_get(p.ws_addr, &path).await.expect("a response");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/gpx+xml"), "{head}");
    let expected = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <gpx version=\"1.1\" creator=\"processor\" xmlns=\"http://www.topografix.com/GPX/1/1\">\n\
         <trk><name>{}</name><trkseg>\n\
         <trkpt lat=\"54.5\" lon=\"25.25\"><time>2025-11-28T10:00:00Z</time></trkpt>\n\
         <trkpt lat=\"54.75\" lon=\"25.25\"><time>2025-11-28T10:00:01Z</time></trkpt>\n\
         </trkseg></trk>\n\
         <trk><name>{}</name><trkseg>\n\
         <trkpt lat=\"1.5\" lon=\"2.5\"><time>2025-11-28T10:00:00.123Z</time></trkpt>\n\
         </trkseg></trk>\n\
         </gpx>\n",
        device(1),
        device(2)
    );
    assert_eq!(body, expected);
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_event_is_404_like_a_missing_one_unless_the_token_grants_it() {
    let env = TestEnv::new("export_auth").await;
    let private = seed_event(&env, "private", &[device(1)]).await;
    store(&env, 1, T0, 54.5, 25.25, false).await;
    let p = started(&env).await;
    let window = format!("from={T0}&to={T0}");

    let (status, head, hidden) = http_get(p.ws_addr, &format!("/events/{private}/tracks?{window}"))
        .await
        .expect("a response");
    assert_eq!(status, 404);
    assert!(head.contains("content-type: application/json"), "{head}");
    let (status, _, missing) = http_get(
        p.ws_addr,
        &format!("/events/{}/tracks?{window}", unique_uuid()),
    )
    .await
    .expect("a response");
    assert_eq!(status, 404);
    assert_eq!(hidden, missing, "not allowed and nonexistent are identical");
    let other = token(json!({"sub": "u", "events": [unique_uuid().to_string()]}));
    let (status, _, body) = http_get(
        p.ws_addr,
        &format!("/events/{private}/tracks?{window}&access_token={other}"),
    )
    .await
    .expect("a response");
    assert_eq!((status, body), (404, missing));

    let granted = token(json!({"sub": "u", "events": [private.to_string()]}));
    let (status, _, body) = http_get(
        p.ws_addr,
        &format!("/events/{private}/tracks?{window}&access_token={granted}"),
    )
    .await
    .expect("a response");
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["features"][0]["properties"]["deviceId"], device(1));

    let (status, head, _) = http_get(
        p.ws_addr,
        &format!("/events/{private}/tracks?{window}&access_token=not.a.token"),
    )
    .await
    .expect("a response");
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_window_or_format_is_400_naming_the_parameter() {
    let env = TestEnv::new("export_bad").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    let p = started(&env).await;
    for (query, names) in [
        ("to=5", "`from`"),
        ("from=5", "`to`"),
        ("from=x&to=5", "`from`"),
        ("from=6&to=5", "`from`"),
        ("from=1&to=5&format=kml", "`format`"),
    ] {
        let (status, _, body) = http_get(p.ws_addr, &format!("/events/{event}/tracks?{query}"))
            .await
            .expect("a response");
        assert_eq!(status, 400, "{query}: {body}");
        let error: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(error["error"], "bad_request");
        assert!(
            error["message"].as_str().unwrap_or("").contains(names),
            "{query}: {body}"
        );
    }
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_longer_than_a_page_is_whole_and_in_order() {
    let env = TestEnv::new("export_pages").await;
    let event = seed_event(&env, "public", &[device(1)]).await;
    // More rows than one page (5,000), inserted in one statement.
    env.pg()
        .await
        .execute(
            "INSERT INTO positions (device_id, ts, latitude, longitude, altitude, angle, speed,
                 satellites, priority, faulty, received_at)
             SELECT $1, to_timestamp(($2::int8 + g * 1000) / 1000.0), 54.5, 25.25, 0, 0, 0, 9, 0,
                    false, now()
             FROM generate_series(0, 12344) g",
            &[&device(1), &T0],
        )
        .await
        .expect("insert many positions");
    let p = started(&env).await;
    let path = format!("/events/{event}/tracks?from={T0}&to={}", T0 + 20_000_000);
    let (status, _, body) = http_get(p.ws_addr, &path).await.expect("a response");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    let stamps: Vec<i64> = doc["features"][0]["properties"]["timestamps"]
        .as_array()
        .expect("timestamps")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let expected: Vec<i64> = (0..12_345).map(|g| T0 + g * 1_000).collect();
    assert_eq!(stamps, expected);
    assert_eq!(
        doc["features"][0]["geometry"]["coordinates"]
            .as_array()
            .map(Vec::len),
        Some(12_345)
    );
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_the_event_is_exported_however_many_an_entry_holds() {
    let env = TestEnv::new("export_many_devices").await;
    // One entry with 101 devices: `GET /events/<uuid>` lists 100 per entry, an export has
    // no such cap.
    let devices: Vec<String> = (0..=100).map(device).collect();
    let event = seed_event(&env, "public", &devices).await;
    store(&env, 100, T0 + 1_000, 1.5, 2.5, false).await;
    let p = started(&env).await;

    let path = format!("/events/{event}/tracks?from={T0}&to={}", T0 + 2_000);
    let (status, _, body) = http_get(p.ws_addr, &path).await.expect("a response");
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("JSON");
    let exported: Vec<&Value> = doc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| &f["properties"]["deviceId"])
        .collect();
    assert_eq!(exported, [&json!(device(100))]);
    drop(p);
    env.cleanup().await;
}
