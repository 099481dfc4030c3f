//! The live path's Postgres queries against a real Postgres.

mod support;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use processor_core::durable::WriteRow;
use processor_core::live::Visibility;
use processor_core::wire::WirePosition;
use processor_core::{Position, UnixMillis};
use processor_shell::postgres::events::{event_visibility, load_device_map, load_snapshot};
use processor_shell::postgres::PositionStore;
use tokio_postgres::NoTls;
use uuid::Uuid;

use support::TestEnv;

const T0: i64 = 1_764_324_000_000;

/// A fresh id (each test has its own schema, so a counter is enough).
fn next_id() -> Uuid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Uuid::from_u128(
        0x0194_0000_0000_7000_8000_0000_0000_0000
            | u128::from(NEXT.fetch_add(1, Ordering::Relaxed)),
    )
}

fn pool(env: &TestEnv) -> Pool {
    let config = tokio_postgres::Config::from_str(&env.database_url()).expect("a valid URL");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(2)
        .runtime(Runtime::Tokio1)
        .build()
        .expect("build the pool")
}

/// A row as the durable writer stores it.
fn stored_row(device: &str, ts: i64, lat: f64, faulty: bool) -> WriteRow {
    WriteRow {
        position: Position {
            device_id: device.to_owned(),
            ts: UnixMillis(ts),
            latitude: lat,
            longitude: 25.0,
            altitude: 100.0,
            angle: 90.0,
            speed: 10.0,
            satellites: 9,
            priority: 1,
            event_io_id: None,
            attributes: Default::default(),
        },
        faulty,
        received_at: UnixMillis(T0),
        entries: Vec::new(),
        payloads: Vec::new(),
    }
}

async fn add_event(client: &tokio_postgres::Client, visibility: &str) -> Uuid {
    let id = next_id();
    client
        .execute(
            "INSERT INTO events (id, name, visibility) VALUES ($1, 'test', $2)",
            &[&id, &visibility],
        )
        .await
        .expect("insert event");
    id
}

async fn add_entry(client: &tokio_postgres::Client, event: Uuid, devices: &[&str]) -> Uuid {
    let id = next_id();
    client
        .execute(
            "INSERT INTO entries (id, event_id) VALUES ($1, $2)",
            &[&id, &event],
        )
        .await
        .expect("insert entry");
    for device in devices {
        add_device(client, id, device).await;
    }
    id
}

async fn add_device(client: &tokio_postgres::Client, entry: Uuid, device: &str) {
    client
        .execute(
            "INSERT INTO entry_devices (entry_id, device_id) VALUES ($1, $2)",
            &[&entry, &device],
        )
        .await
        .expect("insert entry device");
}

/// A stored, non-faulty position: the snapshot reads the newest of these per device.
async fn add_latest(
    client: &tokio_postgres::Client,
    device: &str,
    ts_ms: i64,
    lat: f64,
    lon: f64,
    speed: f64,
    angle: f64,
) {
    client
        .execute(
            "INSERT INTO positions (device_id, ts, latitude, longitude, altitude, angle, speed,
                                    satellites, priority, faulty, received_at)
             VALUES ($1, to_timestamp($2::float8 / 1000), $3, $4, 0, $6, $5, 9, 0, false, now())",
            &[&device, &(ts_ms as f64), &lat, &lon, &speed, &angle],
        )
        .await
        .expect("insert a stored position");
}

#[tokio::test]
async fn device_map_lists_every_event_of_each_device() {
    let env = TestEnv::new("lq_map").await;
    let pg = env.pg().await;
    let pool = pool(&env);
    let a = add_event(&pg, "public").await;
    let b = add_event(&pg, "private").await;
    let _empty = add_event(&pg, "public").await;
    add_entry(&pg, a, &["dev-1", "dev-2"]).await;
    add_entry(&pg, b, &["dev-1"]).await;
    // Two entries of one event carrying the same device: the event once.
    add_entry(&pg, b, &["dev-1", "dev-3"]).await;

    let map = load_device_map(&pool).await.expect("load the map");
    assert_eq!(map.len(), 3);
    assert_eq!(map["dev-1"], BTreeSet::from([a, b]));
    assert_eq!(map["dev-2"], BTreeSet::from([a]));
    assert_eq!(map["dev-3"], BTreeSet::from([b]));
    assert!(!map.contains_key("dev-unlisted"));

    env.cleanup().await;
}

#[tokio::test]
async fn device_map_is_empty_without_entries() {
    let env = TestEnv::new("lq_map_empty").await;
    let pg = env.pg().await;
    let pool = pool(&env);
    add_event(&pg, "public").await;

    let map = load_device_map(&pool).await.expect("load the map");
    assert!(map.is_empty());

    env.cleanup().await;
}

#[tokio::test]
async fn device_map_reload_sees_new_and_removed_rows() {
    let env = TestEnv::new("lq_map_reload").await;
    let pg = env.pg().await;
    let pool = pool(&env);
    let a = add_event(&pg, "public").await;
    let b = add_event(&pg, "public").await;
    let entry_a = add_entry(&pg, a, &["dev-1"]).await;
    let entry_b = add_entry(&pg, b, &[]).await;

    let before = load_device_map(&pool).await.expect("load the map");
    assert_eq!(before["dev-1"], BTreeSet::from([a]));
    assert!(!before.contains_key("dev-2"));

    add_device(&pg, entry_b, "dev-1").await;
    add_device(&pg, entry_a, "dev-2").await;
    let after = load_device_map(&pool).await.expect("reload the map");
    assert_eq!(after["dev-1"], BTreeSet::from([a, b]));
    assert_eq!(after["dev-2"], BTreeSet::from([a]));

    pg.execute(
        "DELETE FROM entry_devices WHERE entry_id = $1 AND device_id = 'dev-1'",
        &[&entry_a],
    )
    .await
    .expect("delete");
    pg.execute("DELETE FROM events WHERE id = $1", &[&b])
        .await
        .expect("delete the event (cascades)");
    let last = load_device_map(&pool).await.expect("reload the map");
    assert!(!last.contains_key("dev-1"));
    assert_eq!(last["dev-2"], BTreeSet::from([a]));

    env.cleanup().await;
}

#[tokio::test]
async fn visibility_is_public_private_or_unknown() {
    let env = TestEnv::new("lq_visibility").await;
    let pg = env.pg().await;
    let pool = pool(&env);
    let public = add_event(&pg, "public").await;
    let private = add_event(&pg, "private").await;

    assert_eq!(
        event_visibility(&pool, public).await.expect("query"),
        Visibility::Public
    );
    assert_eq!(
        event_visibility(&pool, private).await.expect("query"),
        Visibility::Private
    );
    assert_eq!(
        event_visibility(&pool, next_id()).await.expect("query"),
        Visibility::Unknown
    );

    // A change is seen by the next read (caching is the caller's).
    pg.execute(
        "UPDATE events SET visibility = 'private' WHERE id = $1",
        &[&public],
    )
    .await
    .expect("update");
    assert_eq!(
        event_visibility(&pool, public).await.expect("query"),
        Visibility::Private
    );

    env.cleanup().await;
}

#[tokio::test]
async fn snapshot_returns_the_latest_row_of_each_asked_device_sorted() {
    let env = TestEnv::new("lq_snapshot").await;
    let pg = env.pg().await;
    let pool = pool(&env);
    add_latest(&pg, "dev-b", T0 + 5_123, 54.68, 25.28, 42.5, 270.0).await;
    add_latest(&pg, "dev-a", T0, 54.0, 25.0, 0.0, 0.0).await;
    add_latest(&pg, "dev-c", T0, 1.0, 2.0, 3.0, 4.0).await;

    let devices = vec![
        "dev-b".to_owned(),
        "dev-unknown".to_owned(),
        "dev-a".to_owned(),
    ];
    let snapshot = load_snapshot(&pool, &devices).await.expect("snapshot");
    assert_eq!(
        snapshot,
        vec![
            WirePosition {
                device_id: "dev-a".into(),
                lat: 54.0,
                lon: 25.0,
                ts: T0,
                speed: 0.0,
                course: 0.0,
            },
            WirePosition {
                device_id: "dev-b".into(),
                lat: 54.68,
                lon: 25.28,
                ts: T0 + 5_123,
                speed: 42.5,
                course: 270.0,
            },
        ]
    );

    assert!(load_snapshot(&pool, &[]).await.expect("empty").is_empty());
    let none = load_snapshot(&pool, &["nobody".to_owned()])
        .await
        .expect("unknown only");
    assert!(none.is_empty());

    env.cleanup().await;
}

#[tokio::test]
async fn snapshot_sorts_device_ids_bytewise() {
    let env = TestEnv::new("lq_snapshot_order").await;
    let pg = env.pg().await;
    let pool = pool(&env);
    let ids = ["b", "B", "a", "A", "10", "9"];
    for id in ids {
        add_latest(&pg, id, T0, 1.0, 1.0, 0.0, 0.0).await;
    }
    let devices: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let snapshot = load_snapshot(&pool, &devices).await.expect("snapshot");
    let got: Vec<&str> = snapshot.iter().map(|p| p.device_id.as_str()).collect();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(got, want);

    env.cleanup().await;
}

/// With the real store: the snapshot is each device's newest non-faulty stored fix, not a
/// faulty one nor an older one that arrived late.
#[tokio::test]
async fn snapshot_skips_faulty_and_older_positions_stored_by_the_writer() {
    let env = TestEnv::new("lq_snapshot_store").await;
    let pool = pool(&env);
    let store = PositionStore::new(pool.clone());
    store
        .write(&[
            stored_row("dev-1", T0 + 1_000, 54.2, false),
            stored_row("dev-1", T0 + 2_000, 0.0, true),
            stored_row("dev-2", T0 + 7, 54.3, false),
        ])
        .await
        .expect("store");
    // Late and older: stored, but not the latest.
    store
        .write(&[stored_row("dev-1", T0, 54.1, false)])
        .await
        .expect("store");

    let devices = ["dev-1".to_owned(), "dev-2".to_owned()];
    let snapshot = load_snapshot(&pool, &devices).await.expect("snapshot");
    assert_eq!(snapshot.len(), 2);
    assert_eq!(
        (
            snapshot[0].device_id.as_str(),
            snapshot[0].ts,
            snapshot[0].lat
        ),
        ("dev-1", T0 + 1_000, 54.2)
    );
    assert_eq!((snapshot[0].speed, snapshot[0].course), (10.0, 90.0));
    assert_eq!(
        (snapshot[1].device_id.as_str(), snapshot[1].ts),
        ("dev-2", T0 + 7)
    );

    env.cleanup().await;
}

/// The trail query thins in SQL so that what it reads is bounded; what it keeps must be
/// exactly what the core's `thin` keeps, for every count of fixes and every maximum.
#[tokio::test]
async fn the_trail_query_keeps_what_the_cores_thinning_keeps() {
    use processor_core::live::{thin, HistoryQuery};
    use processor_shell::postgres::history::load_history;
    use std::collections::BTreeMap;

    let env = TestEnv::new("lq_trail_thinning").await;
    let pool = pool(&env);
    let store = PositionStore::new(pool.clone());
    // Device `t<n>` has n fixes before its newest, one a second.
    const MOST: i64 = 40;
    let devices: Vec<String> = (0..=MOST).map(|n| format!("t{n:02}")).collect();
    let rows: Vec<WriteRow> = devices
        .iter()
        .zip(0..)
        .flat_map(|(d, n)| (0..=n).map(move |k| stored_row(d, T0 + k * 1_000, 54.0, false)))
        .collect();
    store.write(&rows).await.expect("store");

    for max in [1, 2, 3, 7, 8, 13, 39, 40] {
        let query = HistoryQuery::Trail {
            window_ms: 3_600_000,
            max_rows_per_device: max,
        };
        let got = load_history(&pool, &devices, query).await.expect("trails");
        let mut trails: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for row in &got {
            trails
                .entry(row.device_id.as_str())
                .or_default()
                .insert(row.ts);
        }
        for (d, n) in devices.iter().zip(0..) {
            let newest = T0 + n * 1_000;
            let earlier: Vec<i64> = (0..n).map(|k| T0 + k * 1_000).collect();
            let read: Vec<i64> = trails
                .get(d.as_str())
                .map(|ts| ts.iter().copied().filter(|t| *t < newest).collect())
                .unwrap_or_default();
            assert_eq!(read, thin(&earlier, max), "{d}, at most {max}");
        }
    }
    env.cleanup().await;
}
