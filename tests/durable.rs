//! The durable path against real Redis, real Postgres and the real `processor` binary.

mod support;

use std::collections::BTreeSet;

use support::proxy::Proxy;
use support::{payload, wait_until, Processor, TestEnv};

const T0: i64 = 1_764_324_000_000;

/// `devices` x `per_device` distinct positions, then a second copy of every third one, in
/// an interleaved order (duplicates arrive both close together and far apart).
fn positions_with_duplicates(devices: u64, per_device: i64) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    for k in 0..per_device {
        for d in 0..devices {
            out.push(payload(d, T0 + k * 1_000));
        }
    }
    let distinct = out.len();
    let copies: Vec<String> = out.iter().step_by(3).cloned().collect();
    out.extend(copies);
    (out, distinct)
}

async fn stored(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM positions").await
}

async fn settle(env: &TestEnv, expected: i64) {
    wait_until(
        "every distinct position is stored and nothing is pending",
        || async { stored(env).await == expected && env.pending().await == 0 },
    )
    .await;
}

fn small_batches() -> Vec<(&'static str, String)> {
    vec![("DURABLE_BATCH_SIZE", "200".into())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_each_distinct_position_once_and_leaves_nothing_pending() {
    let env = TestEnv::new("distinct").await;
    let (mut payloads, distinct) = positions_with_duplicates(300, 8);
    // Faulty ones are stored too, flagged (the snapshot query skips them: tests/live_queries.rs).
    for d in 1_000..1_050u64 {
        payloads.push(payload(d, T0).replace("\"satellites\":9", "\"satellites\":0"));
    }
    env.publish(&payloads).await;
    let processor = Processor::start(&env, "a", &small_batches());

    settle(&env, distinct as i64 + 50).await;
    assert_eq!(
        env.count("SELECT count(*) FROM positions WHERE faulty")
            .await,
        50
    );
    let attrs = env
        .count(
            "SELECT count(*) FROM positions WHERE attributes->>'odometer' = '18446744073709551615'",
        )
        .await;
    assert_eq!(
        attrs,
        distinct as i64 + 50,
        "u64 attributes are stored exactly"
    );
    assert_eq!(
        processor.metric("processor_durable_records_total").await,
        Some(payloads.len() as f64)
    );
    drop(processor);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decode_errors_and_rejected_rows_are_dead_lettered_and_neighbours_stored() {
    let env = TestEnv::new("dead_letters").await;
    let mut payloads: Vec<String> = (0..100).map(|d| payload(d, T0)).collect();
    payloads.insert(10, "not json".into());
    payloads.insert(
        50,
        r#"{"device_id":"356307040000001","latitude":1,"longitude":2}"#.into(),
    );
    // A NUL, which Postgres refuses in text, is the decoder's to refuse (contract section 3):
    // a decode error, dead-lettered at once rather than after every redelivery.
    payloads.insert(
        70,
        payload(7_000, T0).replace("356307040007000", "bad\\u0000device"),
    );
    // A row Postgres refuses for a reason of its own: a constraint of this test's schema.
    env.pg()
        .await
        .batch_execute(
            "ALTER TABLE positions ADD CONSTRAINT test_refused CHECK (device_id <> 'refused-device')",
        )
        .await
        .expect("add the test's constraint");
    payloads.insert(
        80,
        payload(8_000, T0).replace("356307040008000", "refused-device"),
    );
    env.publish(&payloads).await;
    {
        let mut redis = env.redis().await;
        let _: String = redis::cmd("XADD")
            .arg(&env.stream)
            .arg("*")
            .arg("other")
            .arg("no payload here")
            .query_async(&mut redis)
            .await
            .expect("XADD");
    }
    let processor = Processor::start(
        &env,
        "a",
        &[
            ("DURABLE_MAX_DELIVERIES", "2".into()),
            ("DURABLE_CLAIM_IDLE_MS", "200".into()),
        ],
    );

    wait_until("five entries are dead-lettered", || async {
        env.dead_letters().await.len() == 5
    })
    .await;
    settle(&env, 100).await;
    let dead = env.dead_letters().await;
    let reasons: BTreeSet<String> = dead.iter().map(|d| d["reason"].clone()).collect();
    let expect = [
        "payload is not valid JSON",
        "missing required field `timestamp`",
        "entry has no payload field",
        "field `device_id` must not contain control characters",
        "rejected by Postgres",
    ];
    for e in expect {
        assert!(
            reasons.iter().any(|r| r.starts_with(e)),
            "a dead letter's reason starts with {e:?}; reasons: {reasons:?}"
        );
    }
    for d in &dead {
        assert!(
            d.contains_key("source_id"),
            "dead letter names its source entry"
        );
    }
    assert!(
        dead.iter()
            .any(|d| d.get("payload").map(String::as_str) == Some("not json")),
        "the original payload travels with a decode error"
    );
    assert_eq!(
        processor
            .metric("processor_durable_dead_lettered_total")
            .await,
        Some(5.0)
    );
    assert_eq!(
        processor
            .metric("processor_durable_decode_errors_total")
            .await,
        Some(4.0)
    );
    assert!(
        !processor.log_text().contains("bad\\u0000device"),
        "payloads are never logged"
    );
    drop(processor);
    env.cleanup().await;
}

/// Starts a processor whose Postgres connection goes through `proxy`, waits until it has
/// stored some rows, cuts Postgres, waits until it holds pending entries it cannot store,
/// and kills it with SIGKILL.
async fn crash_while_holding_entries(env: &TestEnv, proxy: &Proxy) {
    let db = env
        .database_url()
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    let mut victim =
        Processor::start_with(env, "victim", &db, &support::redis_url(), &small_batches());
    wait_until("the victim stores something", || async {
        stored(env).await > 0
    })
    .await;
    proxy.cut();
    wait_until("the victim holds entries it cannot store", || async {
        env.pending().await > 0
    })
    .await;
    victim.kill9();
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_then_restart_stores_everything_exactly_once() {
    let env = TestEnv::new("crash").await;
    let proxy = Proxy::start(pg_addr()).await;
    let (payloads, distinct) = positions_with_duplicates(500, 10);
    env.publish(&payloads).await;
    crash_while_holding_entries(&env, &proxy).await;

    // Same consumer name: it drains its own pending entries first.
    let restarted = Processor::start(&env, "victim", &small_batches());
    settle(&env, distinct as i64).await;
    drop(restarted);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_reclaims_what_a_dead_one_left_pending() {
    let env = TestEnv::new("reclaim").await;
    let proxy = Proxy::start(pg_addr()).await;
    let (payloads, distinct) = positions_with_duplicates(500, 10);
    env.publish(&payloads).await;
    crash_while_holding_entries(&env, &proxy).await;

    let mut vars = small_batches();
    vars.push(("DURABLE_CLAIM_IDLE_MS", "300".into()));
    let survivor = Processor::start(&env, "survivor", &vars);
    settle(&env, distinct as i64).await;
    assert!(
        survivor
            .metric("processor_durable_records_total")
            .await
            .unwrap_or(0.0)
            > 0.0,
        "the survivor did the work"
    );
    drop(survivor);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_and_readiness_follows() {
    let env = TestEnv::new("pg_outage").await;
    let proxy = Proxy::start(pg_addr()).await;
    let db = env
        .database_url()
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    let processor = Processor::start_with(&env, "a", &db, &support::redis_url(), &small_batches());
    let first: Vec<String> = (0..500).map(|d| payload(d, T0)).collect();
    env.publish(&first).await;
    settle(&env, 500).await;
    wait_until("ready", || async { processor.ready().await == Some(true) }).await;

    proxy.cut();
    wait_until("not ready while Postgres is away", || async {
        processor.ready().await == Some(false)
    })
    .await;
    let second: Vec<String> = (0..500).map(|d| payload(d, T0 + 1_000)).collect();
    env.publish(&second).await;
    env.publish(&first).await;
    proxy.restore();

    wait_until("ready again", || async {
        processor.ready().await == Some(true)
    })
    .await;
    settle(&env, 1_000).await;
    assert_eq!(
        processor
            .metric("processor_durable_dead_lettered_total")
            .await,
        Some(0.0)
    );
    drop(processor);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_nothing_and_readiness_follows() {
    let env = TestEnv::new("redis_outage").await;
    let proxy = Proxy::start(redis_addr()).await;
    let redis_via_proxy = format!("redis://{}", proxy.addr);
    let processor = Processor::start_with(
        &env,
        "a",
        &env.database_url(),
        &redis_via_proxy,
        &small_batches(),
    );
    let first: Vec<String> = (0..500).map(|d| payload(d, T0)).collect();
    env.publish(&first).await;
    settle(&env, 500).await;
    wait_until("ready", || async { processor.ready().await == Some(true) }).await;

    proxy.cut();
    wait_until("not ready while Redis is away", || async {
        processor.ready().await == Some(false)
    })
    .await;
    let second: Vec<String> = (0..500).map(|d| payload(d, T0 + 1_000)).collect();
    env.publish(&second).await;
    proxy.restore();

    wait_until("ready again", || async {
        processor.ready().await == Some(true)
    })
    .await;
    settle(&env, 1_000).await;
    drop(processor);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_settles_what_is_held_and_exits_zero() {
    let env = TestEnv::new("sigterm").await;
    let (payloads, distinct) = positions_with_duplicates(500, 10);
    env.publish(&payloads).await;
    let mut processor = Processor::start(&env, "a", &small_batches());
    wait_until("something is stored", || async { stored(&env).await > 0 }).await;

    let status = processor.terminate();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status:?}\n{}",
        processor.log_text()
    );
    assert_eq!(
        env.pending().await,
        0,
        "a clean exit leaves none of its entries pending"
    );

    let again = Processor::start(&env, "b", &small_batches());
    settle(&env, distinct as i64).await;
    drop(again);
    env.cleanup().await;
}

fn pg_addr() -> std::net::SocketAddr {
    "127.0.0.1:5432".parse().expect("literal address")
}

fn redis_addr() -> std::net::SocketAddr {
    "127.0.0.1:6379".parse().expect("literal address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_stream_and_store_each_position_once() {
    let env = TestEnv::new("two_instances").await;
    let (payloads, distinct) = positions_with_duplicates(400, 10);
    let a = Processor::start(&env, "a", &small_batches());
    let b = Processor::start(&env, "b", &small_batches());
    env.publish(&payloads).await;
    settle(&env, distinct as i64).await;
    let took_a = a
        .metric("processor_durable_records_total")
        .await
        .unwrap_or(0.0);
    let took_b = b
        .metric("processor_durable_records_total")
        .await
        .unwrap_or(0.0);
    assert_eq!(
        took_a + took_b,
        payloads.len() as f64,
        "each entry went to one instance"
    );
    drop((a, b));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trimmer_removes_only_what_every_group_is_done_with() {
    let env = TestEnv::new("trim").await;
    let (payloads, distinct) = positions_with_duplicates(100, 6);
    env.publish(&payloads).await;
    // A consumer group that has read nothing yet: it still needs every entry.
    let mut redis = env.redis().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&env.stream)
        .arg("laggard")
        .arg("0")
        .query_async(&mut redis)
        .await
        .expect("create a lagging group");
    let p = Processor::start(
        &env,
        "a",
        &[
            ("STREAM_TRIM_INTERVAL_MS", "50".into()),
            ("DURABLE_BATCH_SIZE", "200".into()),
        ],
    );
    settle(&env, distinct as i64).await;
    let xlen = |mut redis: redis::aio::MultiplexedConnection, stream: String| async move {
        redis::cmd("XLEN")
            .arg(&stream)
            .query_async::<u64>(&mut redis)
            .await
            .expect("XLEN")
    };
    let passes = p
        .metric("processor_stream_trim_passes_total")
        .await
        .unwrap_or(0.0);
    wait_until("two trim passes after everything was stored", || async {
        p.metric("processor_stream_trim_passes_total")
            .await
            .is_some_and(|n| n >= passes + 2.0)
    })
    .await;
    assert_eq!(
        xlen(redis.clone(), env.stream.clone()).await,
        payloads.len() as u64,
        "nothing the lagging group still needs is trimmed"
    );
    assert_eq!(
        p.metric("processor_stream_trimmed_entries_total").await,
        Some(0.0)
    );

    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&env.stream)
        .arg("laggard")
        .query_async(&mut redis)
        .await
        .expect("destroy the lagging group");
    wait_until("entries every group is done with are trimmed", || async {
        xlen(redis.clone(), env.stream.clone()).await < payloads.len() as u64
    })
    .await;
    assert!(p
        .metric("processor_stream_trimmed_entries_total")
        .await
        .is_some_and(|n| n > 0.0));
    assert_eq!(
        stored(&env).await,
        distinct as i64,
        "trimming lost nothing stored"
    );
    assert_eq!(env.pending().await, 0);
    drop(p);
    env.cleanup().await;
}

/// The consumers of the durable group, by name.
async fn durable_consumers(env: &TestEnv) -> Vec<String> {
    let mut redis = env.redis().await;
    let reply: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&env.stream)
        .arg("durable-write")
        .query_async(&mut redis)
        .await
        .expect("XINFO CONSUMERS");
    let redis::Value::Array(consumers) = reply else {
        panic!("XINFO CONSUMERS answers an array: {reply:?}");
    };
    consumers
        .into_iter()
        .filter_map(|consumer| {
            let fields: std::collections::HashMap<String, redis::Value> =
                redis::from_redis_value(consumer).ok()?;
            redis::from_redis_value(fields.get("name")?.clone()).ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_removes_the_consumer_when_nothing_is_pending() {
    let env = TestEnv::new("consumer_removed").await;
    let (payloads, distinct) = positions_with_duplicates(50, 4);
    env.publish(&payloads).await;
    let mut processor = Processor::start(&env, "leaving", &small_batches());
    settle(&env, distinct as i64).await;
    assert_eq!(durable_consumers(&env).await, vec!["leaving".to_owned()]);

    let status = processor.terminate();
    assert!(status.success(), "{}", processor.log_text());
    assert_eq!(
        durable_consumers(&env).await,
        Vec::<String>::new(),
        "the group keeps no consumer of a cleanly stopped instance"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_still_holds_pending_entries_is_kept() {
    let env = TestEnv::new("consumer_kept").await;
    let proxy = Proxy::start(pg_addr()).await;
    let (payloads, distinct) = positions_with_duplicates(500, 10);
    env.publish(&payloads).await;
    let db = env
        .database_url()
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    let mut vars = small_batches();
    // Gives up on what it cannot store at once, so that the stop leaves entries pending.
    vars.push(("SHUTDOWN_GRACE_MS", "1".into()));
    let mut processor = Processor::start_with(&env, "holding", &db, &support::redis_url(), &vars);
    wait_until("something is stored", || async { stored(&env).await > 0 }).await;
    proxy.cut();
    wait_until("entries are held that cannot be stored", || async {
        env.pending().await > 0
    })
    .await;

    let status = processor.terminate();
    assert!(status.success(), "{}", processor.log_text());
    assert!(env.pending().await > 0);
    assert_eq!(
        durable_consumers(&env).await,
        vec!["holding".to_owned()],
        "deleting it would drop its pending entries"
    );
    proxy.restore();
    // Its own next start drains them.
    let again = Processor::start(&env, "holding", &small_batches());
    settle(&env, distinct as i64).await;
    drop(again);
    env.cleanup().await;
}
