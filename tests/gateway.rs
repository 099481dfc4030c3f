//! `processor gateway` against real Redis (and Postgres for the allow-list and the whole
//! chain): every rule of contract §8 with real sockets.

mod support;

use std::collections::BTreeMap;

use processor_core::teltonika::udp::encode_datagram;
use processor_core::teltonika::{encode_data, Codec};
use serde_json::Value;
use support::gateway::{now_ms, packet, record, Answer, GatewayProc, Tracker};
use support::live::{connect, seed_event};
use support::proxy::Proxy;
use support::{redis_url, wait_until, Processor, TestEnv};

const IMEI: &str = "356307042441013";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

// The Teltonika wiki's examples.
const CODEC8: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
const CODEC8E: &str = "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994";
const CODEC16: &str = "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3";
const UDP8: &str = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001";

type Entry = BTreeMap<String, String>;

async fn entries(env: &TestEnv) -> Vec<Entry> {
    env.stream_entries(&env.stream).await
}

fn payload(entry: &Entry) -> Value {
    serde_json::from_str(&entry["payload"]).expect("payload is JSON")
}

async fn ready_gateway(env: &TestEnv, vars: &[(&str, String)]) -> GatewayProc {
    let gateway = GatewayProc::start(env, "g", vars);
    wait_until("the gateway is ready", || async {
        gateway.ready().await == Some(true)
    })
    .await;
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_over_tcp_becomes_entries_acknowledged_after_they_are_stored() {
    let env = TestEnv::new("gw_codecs").await;
    let gateway = ready_gateway(&env, &[]).await;
    let mut tracker = Tracker::connect(gateway.addr).await;
    // a keepalive before the handshake gets no answer
    tracker.send(&[0xFF]).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    tracker.send(&hex(CODEC8)).await;
    assert_eq!(tracker.ack().await, Some(1));
    // byte by byte
    for b in hex(CODEC8E) {
        tracker.send(&[b]).await;
    }
    assert_eq!(tracker.ack().await, Some(1));
    // two packets and keepalives in one write
    let mut both = hex(CODEC16);
    both.push(0xFF);
    both.extend(hex(CODEC8));
    tracker.send(&both).await;
    assert_eq!(tracker.ack().await, Some(2));
    assert_eq!(tracker.ack().await, Some(1));

    let stored = entries(&env).await;
    assert_eq!(stored.len(), 5, "one entry per record: {stored:?}");
    let sources: Vec<_> = stored.iter().map(|e| e["source"].as_str()).collect();
    assert_eq!(sources, vec!["teltonika-tcp"; 5]);
    let ts: Vec<_> = stored
        .iter()
        .map(|e| payload(e)["timestamp"].clone())
        .collect();
    assert_eq!(
        ts,
        vec![
            Value::from(0x16B40D8EA30u64),
            Value::from(0x16B412CEE00u64),
            Value::from(0x16BDBC78330u64),
            Value::from(0x16BDBC78718u64),
            Value::from(0x16B40D8EA30u64),
        ],
        "packets in arrival order, records in packet order"
    );
    // One received_at per packet.
    assert_eq!(stored[2]["received_at"], stored[3]["received_at"]);
    assert!(stored[0]["received_at"].parse::<u64>().is_ok());
    assert_eq!(
        payload(&stored[0]),
        serde_json::json!({
            "device_id": IMEI, "timestamp": 0x16B40D8EA30u64, "latitude": 0.0, "longitude": 0.0,
            "altitude": 0, "angle": 0, "satellites": 0, "speed": 0, "priority": 1,
            "event_io_id": 1,
            "attributes": {"21": 3, "1": 1, "66": 0x5E0F, "241": 0x601A, "78": 0}
        })
    );
    assert_eq!(payload(&stored[2])["generation_type"], 5);
    assert_eq!(
        gateway
            .metric("processor_gateway_packets_total{transport=\"tcp\"}")
            .await,
        Some(4.0)
    );
    assert_eq!(
        gateway.metric("processor_gateway_records_total").await,
        Some(5.0)
    );
    env.cleanup().await;
}

fn corrupt_crc(mut packet: Vec<u8>) -> Vec<u8> {
    let last = packet.len() - 1;
    packet[last] ^= 0x5A;
    packet
}

fn with_data(data: &[u8]) -> Vec<u8> {
    processor_core::teltonika::tcp_frame::encode_packet(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_packets_are_skipped_unanswered_until_the_bound_closes_the_connection() {
    let env = TestEnv::new("gw_bad").await;
    let gateway = ready_gateway(&env, &[]).await;
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    let good = packet(
        Codec::Codec8Extended,
        &[record(Codec::Codec8Extended, now_ms(), 0)],
    );
    // crc: no answer; the next answer is the good packet's ack
    tracker.send(&corrupt_crc(good.clone())).await;
    tracker.send(&good).await;
    assert_eq!(tracker.ack().await, Some(1));
    // codec 12 (command traffic) and a count mismatch: skipped, the third bad one closes
    let mut codec12 = encode_data(Codec::Codec8, &[record(Codec::Codec8, now_ms(), 1)]).unwrap();
    codec12[0] = 0x0C;
    tracker.send(&with_data(&codec12)).await;
    let mut count = encode_data(Codec::Codec8, &[record(Codec::Codec8, now_ms(), 2)]).unwrap();
    *count.last_mut().unwrap() = 2;
    tracker.send(&with_data(&count)).await;
    assert!(
        tracker.until_closed().await.is_empty(),
        "no answer to a bad packet"
    );
    assert_eq!(entries(&env).await.len(), 1, "a bad packet adds nothing");
    for (reason, n) in [
        ("crc", 1.0),
        ("codec", 1.0),
        ("count", 1.0),
        ("malformed", 0.0),
    ] {
        let name = format!("processor_gateway_bad_packets_total{{reason=\"{reason}\"}}");
        assert_eq!(gateway.metric(&name).await, Some(n), "{name}");
    }
    // malformed: a record that runs past the data
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    let mut short = encode_data(Codec::Codec8, &[record(Codec::Codec8, now_ms(), 3)]).unwrap();
    short.remove(10);
    tracker.send(&with_data(&short)).await;
    tracker.send(&good).await;
    assert_eq!(tracker.ack().await, Some(1));
    wait_until("malformed is counted", || async {
        gateway
            .metric("processor_gateway_bad_packets_total{reason=\"malformed\"}")
            .await
            == Some(1.0)
    })
    .await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_framing_rules() {
    let env = TestEnv::new("gw_handshake").await;
    let gateway = ready_gateway(&env, &[]).await;
    // not digits: 00 and closed
    let mut t = Tracker::connect(gateway.addr).await;
    assert_eq!(t.handshake("35630704244101X").await, Answer::Bytes(vec![0]));
    assert!(t.until_closed().await.is_empty());
    // an AVL packet before the handshake: closed without a reply
    let mut t = Tracker::connect(gateway.addr).await;
    t.send(&hex(CODEC8)).await;
    assert!(t.until_closed().await.is_empty());
    // framing: a non-zero preamble closes at once
    let mut t = Tracker::connect(gateway.addr).await;
    assert_eq!(t.handshake(IMEI).await, Answer::Bytes(vec![1]));
    t.send(&[0, 0, 1, 0, 0, 0, 0, 10]).await;
    assert!(t.until_closed().await.is_empty());
    // framing: over GATEWAY_MAX_PACKET_BYTES
    let mut t = Tracker::connect(gateway.addr).await;
    assert_eq!(t.handshake(IMEI).await, Answer::Bytes(vec![1]));
    t.send(&[0, 0, 0, 0, 0, 0, 0x10, 0]).await;
    assert!(t.until_closed().await.is_empty());
    assert_eq!(
        gateway
            .metric("processor_gateway_bad_packets_total{reason=\"framing\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        gateway
            .metric("processor_gateway_devices_rejected_total")
            .await,
        Some(1.0)
    );
    assert!(entries(&env).await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_are_answered_only_once_appended() {
    let env = TestEnv::new("gw_udp").await;
    let gateway = ready_gateway(&env, &[]).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // a datagram whose length field is wrong is dropped unanswered; the next answer is the
    // good one's
    let mut bad = hex(UDP8);
    bad[1] ^= 1;
    socket.send_to(&bad, gateway.addr).await.unwrap();
    socket.send_to(&hex(UDP8), gateway.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(support::PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    assert_eq!(buf[..n].to_vec(), hex("0005CAFE010501"));
    let stored = entries(&env).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["source"], "teltonika-udp");
    assert_eq!(payload(&stored[0])["device_id"], "352093086403655");
    // a datagram with a bad IMEI is malformed
    let data = encode_data(Codec::Codec8, &[record(Codec::Codec8, now_ms(), 0)]).unwrap();
    socket
        .send_to(&encode_datagram(1, 1, "12ab", &data), gateway.addr)
        .await
        .unwrap();
    wait_until("the bad IMEI is counted", || async {
        gateway
            .metric("processor_gateway_bad_packets_total{reason=\"malformed\"}")
            .await
            == Some(1.0)
    })
    .await;
    assert_eq!(
        gateway
            .metric("processor_gateway_packets_total{transport=\"udp\"}")
            .await,
        Some(1.0)
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_no_ack_and_a_closed_connection_then_the_resend_is_stored() {
    let env = TestEnv::new("gw_redis_down").await;
    let redis_addr: std::net::SocketAddr = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("REDIS_URL is redis://host:port for this test");
    let proxy = Proxy::start(redis_addr).await;
    proxy.cut();
    let gateway = GatewayProc::start(
        &env,
        "g",
        &[("REDIS_URL", format!("redis://{}", proxy.addr))],
    );
    // The listeners are bound while Redis is away; readiness says what is missing.
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(gateway.ready().await, Some(false));
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    let good = packet(
        Codec::Codec8Extended,
        &[record(Codec::Codec8Extended, now_ms(), 0)],
    );
    tracker.send(&good).await;
    assert!(
        tracker.until_closed().await.is_empty(),
        "no ACK while Redis is away"
    );
    assert!(gateway.metric("processor_gateway_redis_errors_total").await >= Some(1.0));
    // A datagram is not answered either: its append fails, and is counted.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = gateway.metric("processor_gateway_redis_errors_total").await;
    udp.send_to(&hex(UDP8), gateway.addr).await.unwrap();
    wait_until(
        "the datagram's append is counted as a Redis error",
        || async { gateway.metric("processor_gateway_redis_errors_total").await > before },
    )
    .await;
    let mut buf = [0u8; 64];
    assert!(
        udp.try_recv_from(&mut buf).is_err(),
        "no answer while Redis is away"
    );

    proxy.restore();
    wait_until("the gateway is ready", || async {
        gateway.ready().await == Some(true)
    })
    .await;
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    tracker.send(&good).await;
    assert_eq!(tracker.ack().await, Some(1));
    // The tracker sends the datagram again: now it is stored and answered.
    udp.send_to(&hex(UDP8), gateway.addr).await.unwrap();
    let (n, _) = tokio::time::timeout(support::PATIENCE, udp.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    assert_eq!(buf[..n].to_vec(), hex("0005CAFE010501"));
    assert_eq!(entries(&env).await.len(), 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_admits_only_devices_of_entries() {
    let env = TestEnv::new("gw_allow").await;
    seed_event(&env, "public", &[IMEI.to_owned()]).await;
    let gateway = ready_gateway(&env, &[("GATEWAY_ACCEPT_UNKNOWN_DEVICES", "false".into())]).await;
    let mut known = Tracker::connect(gateway.addr).await;
    assert_eq!(known.handshake(IMEI).await, Answer::Bytes(vec![1]));
    let mut unknown = Tracker::connect(gateway.addr).await;
    assert_eq!(
        unknown.handshake("356307042441099").await,
        Answer::Bytes(vec![0])
    );
    assert!(unknown.until_closed().await.is_empty());
    // over UDP, a datagram from an unknown device is dropped unanswered
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&hex(UDP8), gateway.addr).await.unwrap();
    wait_until("the datagram is refused", || async {
        gateway
            .metric("processor_gateway_devices_rejected_total")
            .await
            == Some(2.0)
    })
    .await;
    assert!(entries(&env).await.is_empty());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_and_the_idle_timeout_close_connections() {
    let env = TestEnv::new("gw_cap").await;
    let gateway = ready_gateway(
        &env,
        &[
            ("GATEWAY_MAX_CONNECTIONS", "1".into()),
            ("GATEWAY_IDLE_TIMEOUT_MS", "300".into()),
        ],
    )
    .await;
    let mut first = Tracker::connect(gateway.addr).await;
    assert_eq!(first.handshake(IMEI).await, Answer::Bytes(vec![1]));
    let mut second = Tracker::connect(gateway.addr).await;
    second
        .send(&processor_core::teltonika::tcp_frame::encode_identity(IMEI))
        .await;
    assert_eq!(
        second.read(1).await,
        Answer::Closed,
        "over the cap: closed unanswered"
    );
    assert_eq!(
        gateway
            .metric("processor_gateway_connections_rejected_total")
            .await,
        Some(1.0)
    );
    // the first one sends nothing more: closed for idleness
    assert!(first.until_closed().await.is_empty());
    wait_until("the idle close is counted", || async {
        gateway.metric("processor_gateway_idle_closes_total").await == Some(1.0)
    })
    .await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_packet_is_stored_once_and_reaches_the_map_once() {
    let env = TestEnv::new("gw_chain").await;
    let event = seed_event(&env, "public", &[IMEI.to_owned()]).await;
    let processor = Processor::start(&env, "p", &[]);
    wait_until("the processor is ready", || async {
        processor.ready().await == Some(true)
    })
    .await;
    let gateway = ready_gateway(&env, &[]).await;
    let mut client = connect(processor.ws_addr, None).await.expect("connect");
    assert!(client.subscribe(event).await.is_empty());

    let ts = now_ms() - 1_000;
    let records = [
        record(Codec::Codec8Extended, ts, 0),
        record(Codec::Codec8Extended, ts + 500, 1),
    ];
    let bytes = packet(Codec::Codec8Extended, &records);
    // the first connection's ACK is lost: the tracker goes away and resends
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    tracker.send(&bytes).await;
    assert_eq!(tracker.ack().await, Some(2));
    drop(tracker);
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    tracker.send(&bytes).await;
    assert_eq!(tracker.ack().await, Some(2));

    for expected in [ts, ts + 500] {
        let message = client.next().await;
        assert_eq!(message["type"], "position", "{message}");
        assert_eq!(message["ts"], expected);
        assert_eq!(message["deviceId"], IMEI);
    }
    wait_until("both records are stored", || async {
        env.count("SELECT count(*) FROM positions").await == 2
    })
    .await;
    assert_eq!(
        entries(&env).await.len(),
        4,
        "the resend is on the stream twice"
    );
    // A later position shows the duplicates were not sent to the client.
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    tracker
        .send(&packet(
            Codec::Codec8Extended,
            &[record(Codec::Codec8Extended, ts + 900, 2)],
        ))
        .await;
    assert_eq!(tracker.ack().await, Some(1));
    assert_eq!(client.next().await["ts"], ts + 900);
    // Stopped before the clean-up, so that nothing recreates the test's stream after it.
    drop((gateway, processor));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_and_exits_zero() {
    let env = TestEnv::new("gw_stop").await;
    let mut gateway = ready_gateway(&env, &[]).await;
    let mut tracker = Tracker::connect(gateway.addr).await;
    assert_eq!(tracker.handshake(IMEI).await, Answer::Bytes(vec![1]));
    tracker
        .send(&packet(
            Codec::Codec8,
            &[record(Codec::Codec8, now_ms(), 0)],
        ))
        .await;
    assert_eq!(tracker.ack().await, Some(1));
    assert!(gateway.terminate().success());
    assert!(
        tracker.until_closed().await.is_empty(),
        "connections are closed"
    );
    assert!(gateway.log_text().contains("gateway stopped"));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_exposed_from_start_up_with_every_label() {
    let env = TestEnv::new("gw_metrics").await;
    let gateway = ready_gateway(&env, &[]).await;
    for name in [
        "processor_gateway_connections",
        "processor_gateway_connections_accepted_total",
        "processor_gateway_connections_rejected_total",
        "processor_gateway_devices_rejected_total",
        "processor_gateway_packets_total{transport=\"tcp\"}",
        "processor_gateway_packets_total{transport=\"udp\"}",
        "processor_gateway_records_total",
        "processor_gateway_bad_packets_total{reason=\"framing\"}",
        "processor_gateway_bad_packets_total{reason=\"crc\"}",
        "processor_gateway_bad_packets_total{reason=\"codec\"}",
        "processor_gateway_bad_packets_total{reason=\"count\"}",
        "processor_gateway_bad_packets_total{reason=\"malformed\"}",
        "processor_gateway_redis_errors_total",
        "processor_gateway_idle_closes_total",
        "processor_gateway_ack_seconds_count",
    ] {
        assert_eq!(gateway.metric(name).await, Some(0.0), "{name} at start-up");
    }
    env.cleanup().await;
}
