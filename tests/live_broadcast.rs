//! The per-instance broadcast group against a real Redis.

mod support;

use std::time::Duration;

use processor_shell::redis_stream::broadcast::BroadcastGroup;
use support::TestEnv;

fn group(env: &TestEnv, instance: &str) -> BroadcastGroup {
    BroadcastGroup {
        stream: env.stream.clone(),
        prefix: "live-broadcast".into(),
        instance: instance.into(),
    }
}

const BLOCK: Duration = Duration::from_millis(50);

async fn groups(env: &TestEnv) -> Vec<String> {
    let mut redis = env.redis().await;
    let info: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&env.stream)
        .query_async(&mut redis)
        .await
        .expect("XINFO GROUPS");
    let mut names = processor_shell::redis_stream::reply::group_names(&info).expect("group names");
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_sees_what_comes_after_it_and_keeps_nothing_pending() {
    let env = TestEnv::new("broadcast_dollar").await;
    env.publish(&["before".to_owned()]).await;
    let g = group(&env, "a");
    let mut redis = env.redis().await;
    g.heartbeat(&mut redis, Duration::from_secs(60))
        .await
        .expect("heartbeat");
    g.create(&mut redis).await.expect("create");
    g.create(&mut redis).await.expect("creating twice is fine");
    env.publish(&["after-1".to_owned(), "after-2".to_owned()])
        .await;

    let got = g.read(&mut redis, 100, BLOCK).await.expect("read");
    let payloads: Vec<&[u8]> = got.iter().filter_map(|e| e.payload.as_deref()).collect();
    assert_eq!(payloads, vec![&b"after-1"[..], &b"after-2"[..]]);
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&env.stream)
        .arg(g.group())
        .query_async(&mut redis)
        .await
        .expect("XPENDING");
    assert_eq!(
        processor_shell::redis_stream::reply::pending_total(&pending).expect("summary"),
        0,
        "NOACK reads leave nothing pending"
    );
    assert!(g
        .read(&mut redis, 100, BLOCK)
        .await
        .expect("read")
        .is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_without_a_heartbeat_are_removed_and_live_ones_kept() {
    let env = TestEnv::new("broadcast_dead").await;
    let mut redis = env.redis().await;
    let me = group(&env, "me");
    let alive = group(&env, "alive");
    let dead = group(&env, "dead");
    for g in [&me, &alive] {
        g.heartbeat(&mut redis, Duration::from_secs(60))
            .await
            .expect("heartbeat");
    }
    for g in [&me, &alive, &dead] {
        g.create(&mut redis).await.expect("create");
    }
    // Another application's group on the same stream is none of our business.
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&env.stream)
        .arg("durable-write")
        .arg("0")
        .query_async(&mut redis)
        .await
        .expect("create the durable group");

    let removed = me
        .remove_dead_groups(&mut redis)
        .await
        .expect("remove dead groups");
    assert_eq!(removed, vec!["live-broadcast-dead".to_owned()]);
    assert_eq!(
        groups(&env).await,
        vec!["durable-write", "live-broadcast-alive", "live-broadcast-me"]
    );

    me.destroy(&mut redis).await.expect("destroy");
    assert_eq!(
        groups(&env).await,
        vec!["durable-write", "live-broadcast-alive"]
    );
    let beat: i64 = redis::cmd("EXISTS")
        .arg(me.heartbeat_key())
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert_eq!(beat, 0, "a clean shutdown removes the heartbeat");
    let _: redis::Value = redis::cmd("DEL")
        .arg(alive.heartbeat_key())
        .query_async(&mut redis)
        .await
        .expect("DEL");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looking_for_dead_groups_on_a_missing_stream_finds_none() {
    let env = TestEnv::new("broadcast_nostream").await;
    let mut redis = env.redis().await;
    let removed = group(&env, "me")
        .remove_dead_groups(&mut redis)
        .await
        .expect("no stream is no error");
    assert!(removed.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_vanished_is_created_again_at_the_end_by_the_read_that_missed_it() {
    let env = TestEnv::new("broadcast_nogroup").await;
    let g = group(&env, "a");
    let mut redis = env.redis().await;
    env.publish(&["first".to_owned()]).await;
    g.create(&mut redis).await.expect("create");
    // As after a Redis restart without persistence, or a sweep by mistake.
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&env.stream)
        .arg(g.group())
        .query_async(&mut redis)
        .await
        .expect("XGROUP DESTROY");
    env.publish(&["while-gone".to_owned()]).await;

    let error = g
        .read(&mut redis, 100, BLOCK)
        .await
        .expect_err("the read reports the missing group");
    assert!(error.to_string().contains("NOGROUP"), "{error}");
    assert_eq!(groups(&env).await, vec![g.group()]);
    env.publish(&["after".to_owned()]).await;
    let got = g.read(&mut redis, 100, BLOCK).await.expect("read");
    let payloads: Vec<&[u8]> = got.iter().filter_map(|e| e.payload.as_deref()).collect();
    assert_eq!(payloads, vec![&b"after"[..]], "the new group starts at `$`");
    env.cleanup().await;
}
