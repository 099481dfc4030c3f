//! The Teltonika codec and the gateway's session machine: the wiki's example packets, the
//! checks of contract §8.2 in their order, the entry mapping of §8.3, and when a session
//! answers, acknowledges and closes (§8.1, §8.4).

use proptest::prelude::*;

use processor_core::teltonika::data::{decode_data, encode_data, AvlData};
use processor_core::teltonika::session::{
    CloseReason, Command, Input, Observation, PacketSeq, Reply, SessionConfig, TcpSession,
};
use processor_core::teltonika::tcp_frame::{
    encode_identity, encode_packet, Expect, TcpFrame, TcpFramer,
};
use processor_core::teltonika::udp::{decode_datagram, encode_datagram, encode_reply};
use processor_core::teltonika::udp_judge::{judge_datagram, UdpVerdict};
use processor_core::teltonika::{
    crc16_ibm, AllowList, AvlRecord, BadPacket, Codec, Imei, IoValue, PacketEntries, Transport,
};
use processor_core::{MonoMillis, UnixMillis};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// The examples of the Teltonika wiki's "Teltonika Data Sending Protocols" page.
const CODEC8: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
const CODEC8E: &str = "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994";
const CODEC16: &str = "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3";
const UDP8: &str = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001";

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut framer = TcpFramer::default();
    framer.push(packet);
    match framer.next_frame(Expect::Packet, 4096) {
        Ok(Some(TcpFrame::Packet(data))) => data,
        other => panic!("not a sound packet: {other:?}"),
    }
}

#[test]
fn crc_is_crc16_ibm() {
    assert_eq!(crc16_ibm(b"123456789"), 0xBB3D);
    assert_eq!(crc16_ibm(b""), 0);
}

#[test]
fn wiki_codec8_example_decodes() {
    let data = decode_data(&framed(&hex(CODEC8))).unwrap();
    assert_eq!(data.codec, Codec::Codec8);
    assert_eq!(data.records.len(), 1);
    let r = &data.records[0];
    assert_eq!(r.timestamp_ms, 0x16B40D8EA30);
    assert_eq!(r.priority, 1);
    assert_eq!(r.event_io_id, 1);
    assert_eq!(r.generation_type, None);
    let fixed = |width, value| IoValue::Fixed { width, value };
    assert_eq!(
        r.io,
        vec![
            (21, fixed(1, 3)),
            (1, fixed(1, 1)),
            (66, fixed(2, 0x5E0F)),
            (241, fixed(4, 0x601A)),
            (78, fixed(8, 0)),
        ]
    );
}

#[test]
fn wiki_codec8_extended_example_decodes() {
    let data = decode_data(&framed(&hex(CODEC8E))).unwrap();
    assert_eq!(data.codec, Codec::Codec8Extended);
    let r = &data.records[0];
    assert_eq!(r.timestamp_ms, 0x16B412CEE00);
    let fixed = |width, value| IoValue::Fixed { width, value };
    assert_eq!(
        r.io,
        vec![
            (1, fixed(1, 1)),
            (0x11, fixed(2, 0x1D)),
            (0x10, fixed(4, 0x015E2C88)),
            (0x0B, fixed(8, 0x3544C87A)),
            (0x0E, fixed(8, 0x1DD7E06A)),
        ]
    );
}

#[test]
fn wiki_codec16_example_decodes() {
    let data = decode_data(&framed(&hex(CODEC16))).unwrap();
    assert_eq!(data.codec, Codec::Codec16);
    assert_eq!(data.records.len(), 2);
    let r = &data.records[1];
    assert_eq!(r.timestamp_ms, 0x16BDBC78718);
    assert_eq!(r.event_io_id, 0x0B);
    assert_eq!(r.generation_type, Some(5));
    let fixed = |width, value| IoValue::Fixed { width, value };
    assert_eq!(
        r.io,
        vec![
            (1, fixed(1, 0)),
            (3, fixed(1, 0)),
            (0x0B, fixed(2, 0x26)),
            (0x42, fixed(2, 0x563A)),
        ]
    );
}

#[test]
fn wiki_udp_example_decodes_and_is_answered() {
    let packet = decode_datagram(&hex(UDP8), 4096).unwrap();
    assert_eq!(packet.packet_id, 0xCAFE);
    assert_eq!(packet.avl_packet_id, 5);
    assert_eq!(packet.imei.as_str(), "352093086403655");
    assert_eq!(packet.data.records.len(), 1);
    assert_eq!(encode_reply(&packet).to_vec(), hex("0005CAFE010501"));
}

fn record(codec: Codec) -> AvlRecord {
    AvlRecord {
        timestamp_ms: 1_764_324_000_000,
        priority: 1,
        longitude: -338_688_197,
        latitude: 546_872_123,
        altitude: -12,
        angle: 270,
        satellites: 9,
        speed: 42,
        event_io_id: 0,
        generation_type: (codec == Codec::Codec16).then_some(2),
        io: vec![
            (21, IoValue::Fixed { width: 1, value: 3 }),
            (
                16,
                IoValue::Fixed {
                    width: 8,
                    value: u64::MAX,
                },
            ),
        ],
    }
}

#[test]
fn a_record_becomes_the_contract_payload() {
    let imei = Imei::parse(b"356307042441013").unwrap();
    let mut r = record(Codec::Codec8Extended);
    r.io.push((16, IoValue::Fixed { width: 4, value: 7 }));
    r.io.push((300, IoValue::Bytes(vec![0xAB, 0x01])));
    let payload = processor_core::teltonika::entry::payload(&imei, &r);
    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "device_id": "356307042441013",
            "timestamp": 1_764_324_000_000u64,
            "latitude": 54.6872123,
            "longitude": -33.8688197,
            "altitude": -12,
            "angle": 270,
            "satellites": 9,
            "speed": 42,
            "priority": 1,
            // An id repeated in a record keeps its last value.
            "attributes": {"21": 3, "16": 7, "300": "ab01"}
        })
    );
    assert!(payload.contains("\"latitude\":54.6872123"), "{payload}");
    // The processor's own decoder takes what the gateway writes.
    let position = processor_core::decode_position(payload.as_bytes()).unwrap();
    assert_eq!(position.latitude, 54.6872123);
}

#[test]
fn event_io_id_and_generation_type_appear_when_sent() {
    let imei = Imei::parse(b"1").unwrap();
    let mut r = record(Codec::Codec16);
    r.event_io_id = 240;
    let value: serde_json::Value =
        serde_json::from_str(&processor_core::teltonika::entry::payload(&imei, &r)).unwrap();
    assert_eq!(value["event_io_id"], 240);
    assert_eq!(value["generation_type"], 2);
    r.generation_type = None;
    r.event_io_id = 0;
    let value: serde_json::Value =
        serde_json::from_str(&processor_core::teltonika::entry::payload(&imei, &r)).unwrap();
    assert!(value.get("event_io_id").is_none() && value.get("generation_type").is_none());
}

#[test]
fn checks_run_in_the_contract_order() {
    let good = encode_data(Codec::Codec8, &[record(Codec::Codec8)]).unwrap();
    // codec before count before malformed
    let mut codec12 = good.clone();
    codec12[0] = 0x0C;
    *codec12.last_mut().unwrap() = 9;
    assert_eq!(decode_data(&codec12), Err(BadPacket::Codec));
    let mut count = good.clone();
    *count.last_mut().unwrap() = 2;
    count.insert(5, 0);
    assert_eq!(decode_data(&count), Err(BadPacket::Count));
    let mut zero = good.clone();
    zero[1] = 0;
    *zero.last_mut().unwrap() = 0;
    assert_eq!(decode_data(&zero), Err(BadPacket::Count));
    let mut extra = good.clone();
    extra.insert(extra.len() - 1, 0);
    assert_eq!(decode_data(&extra), Err(BadPacket::Malformed));
    let mut short = good.clone();
    short.remove(5);
    assert_eq!(decode_data(&short), Err(BadPacket::Malformed));
    // crc before codec: a packet with both faults is counted as crc
    let mut packet = encode_packet(&codec12);
    let last = packet.len() - 1;
    packet[last] ^= 1;
    let mut framer = TcpFramer::default();
    framer.push(&packet);
    assert!(matches!(
        framer.next_frame(Expect::Packet, 4096),
        Ok(Some(TcpFrame::BadCrc { .. }))
    ));
}

#[test]
fn framing_bounds_are_the_contract_bounds() {
    let data = encode_data(Codec::Codec8, &[record(Codec::Codec8)]).unwrap();
    let packet = encode_packet(&data);
    let exact = packet.len();
    let mut framer = TcpFramer::default();
    framer.push(&packet);
    assert!(matches!(
        framer.next_frame(Expect::Packet, exact),
        Ok(Some(TcpFrame::Packet(_)))
    ));
    let mut framer = TcpFramer::default();
    framer.push(&packet);
    assert!(framer.next_frame(Expect::Packet, exact - 1).is_err());
    // L < 3
    let mut framer = TcpFramer::default();
    framer.push(&[0, 0, 0, 0, 0, 0, 0, 2]);
    assert!(framer.next_frame(Expect::Packet, 4096).is_err());
    // a non-zero preamble is refused as soon as its first byte is seen
    let mut framer = TcpFramer::default();
    framer.push(&[0, 1]);
    assert!(framer.next_frame(Expect::Packet, 4096).is_err());
    // the upper half of the CRC field must be 0
    let mut bad = packet.clone();
    bad[exact - 4] = 1;
    let mut framer = TcpFramer::default();
    framer.push(&bad);
    // The bad packet's head (at most LOGGED_HEAD bytes) goes to the log.
    assert!(matches!(
        framer.next_frame(Expect::Packet, 4096),
        Ok(Some(TcpFrame::BadCrc { head })) if head[..] == bad[..bad.len().min(64)]
    ));
    // The shortest data field the length allows (3 bytes) is framed.
    let mut framer = TcpFramer::default();
    framer.push(&encode_packet(&[8, 0, 0]));
    assert_eq!(
        framer.next_frame(Expect::Packet, 4096),
        Ok(Some(TcpFrame::Packet(vec![8, 0, 0])))
    );
    // An identity of the longest length is read, one byte longer is refused; what is
    // not a frame yet stays buffered.
    let longest = processor_core::teltonika::imei::MAX_IMEI_LEN;
    let mut framer = TcpFramer::default();
    let mut identity = u16::try_from(longest).unwrap().to_be_bytes().to_vec();
    identity.extend(std::iter::repeat_n(b'1', longest));
    framer.push(&identity[..5]);
    assert_eq!(framer.buffered(), 5);
    assert_eq!(framer.next_frame(Expect::Identity, 4096), Ok(None));
    framer.push(&identity[5..]);
    assert_eq!(framer.buffered(), longest + 2);
    assert!(matches!(
        framer.next_frame(Expect::Identity, 4096),
        Ok(Some(TcpFrame::Identity(id))) if id.len() == longest
    ));
    assert_eq!(framer.buffered(), 0);
    let mut framer = TcpFramer::default();
    framer.push(&u16::try_from(longest + 1).unwrap().to_be_bytes());
    assert!(matches!(
        framer.next_frame(Expect::Identity, 4096),
        Ok(Some(TcpFrame::IdentityTooLong))
    ));
}

#[test]
fn udp_checks() {
    let data = encode_data(Codec::Codec8Extended, &[record(Codec::Codec8Extended)]).unwrap();
    let good = encode_datagram(7, 3, "356307042441013", &data);
    assert!(decode_datagram(&good, 4096).is_ok());
    assert!(
        decode_datagram(&good, good.len()).is_ok(),
        "exactly the bound"
    );
    assert_eq!(
        decode_datagram(&good, good.len() - 1),
        Err(BadPacket::Framing)
    );
    let mut wrong_len = good.clone();
    wrong_len[1] ^= 1;
    assert_eq!(decode_datagram(&wrong_len, 4096), Err(BadPacket::Framing));
    let letters = encode_datagram(7, 3, "35630704244101A", &data);
    assert_eq!(decode_datagram(&letters, 4096), Err(BadPacket::Malformed));
    let empty = encode_datagram(7, 3, "", &data);
    assert_eq!(decode_datagram(&empty, 4096), Err(BadPacket::Malformed));
    let allow = AllowList::Only(["1".to_string()].into_iter().collect());
    assert!(matches!(
        judge_datagram(&good, 4096, &allow, UnixMillis(5)),
        UdpVerdict::Rejected { .. }
    ));
    match judge_datagram(&good, 4096, &AllowList::Everyone, UnixMillis(5)) {
        UdpVerdict::Append { entries, reply } => {
            assert_eq!(entries.source, "teltonika-udp");
            assert_eq!(entries.received_at, "5");
            assert_eq!(reply, [0, 5, 0, 7, 1, 3, 1]);
        }
        other => panic!("{other:?}"),
    }
}

// ---- the session ----

const CONFIG: SessionConfig = SessionConfig {
    max_packet_bytes: 4096,
    max_bad_packets: 3,
    idle_timeout_ms: 600_000,
    ack_timeout_ms: 10_000,
};

fn drain(session: &mut TcpSession) -> Vec<Command> {
    std::iter::from_fn(|| session.poll_command()).collect()
}

fn receive(session: &mut TcpSession, now: u64, bytes: &[u8]) -> Vec<Command> {
    session.handle(
        MonoMillis(now),
        Input::Received {
            bytes,
            received_at: UnixMillis(1_000 + now as i64),
        },
    );
    drain(session)
}

fn sends(commands: &[Command]) -> Vec<Reply> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Send(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn closed(commands: &[Command]) -> Option<CloseReason> {
    commands.iter().find_map(|c| match c {
        Command::Close(r) => Some(*r),
        _ => None,
    })
}

fn appended(commands: &[Command]) -> Vec<(PacketSeq, PacketEntries)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Append { packet, entries } => Some((*packet, entries.clone())),
            _ => None,
        })
        .collect()
}

fn handshaken() -> TcpSession {
    let mut s = TcpSession::new(CONFIG, MonoMillis(0));
    let out = receive(&mut s, 0, &encode_identity("356307042441013"));
    assert_eq!(
        out,
        vec![Command::CheckDevice(
            Imei::parse(b"356307042441013").unwrap()
        )]
    );
    s.handle(MonoMillis(0), Input::DeviceChecked { allowed: true });
    assert_eq!(sends(&drain(&mut s)), vec![Reply::Handshake(true)]);
    s
}

fn packet(records: usize) -> Vec<u8> {
    let records: Vec<_> = (0..records)
        .map(|i| {
            let mut r = record(Codec::Codec8Extended);
            r.timestamp_ms += i as u64;
            r
        })
        .collect();
    encode_packet(&encode_data(Codec::Codec8Extended, &records).unwrap())
}

#[test]
fn a_packet_is_acknowledged_only_after_its_entries_are_confirmed() {
    let mut s = handshaken();
    let out = receive(&mut s, 5, &packet(3));
    let appends = appended(&out);
    assert_eq!(appends.len(), 1);
    assert_eq!(appends[0].1.len(), 3);
    assert_eq!(appends[0].1.received_at, "1005");
    assert!(sends(&out).is_empty(), "acked before confirmed: {out:?}");
    s.handle(
        MonoMillis(9),
        Input::Appended {
            packet: appends[0].0,
        },
    );
    let out = drain(&mut s);
    assert_eq!(sends(&out), vec![Reply::Ack(3)]);
    assert!(out.contains(&Command::Observe(Observation::Acked {
        records: 3,
        latency_ms: 4
    })));
    assert_eq!(Reply::Ack(3).bytes(), vec![0, 0, 0, 3]);
}

#[test]
fn acks_follow_packet_order_with_one_packet_in_flight() {
    let mut s = handshaken();
    let mut both = packet(1);
    both.extend(packet(2));
    let out = receive(&mut s, 1, &both);
    let first = appended(&out);
    assert_eq!(first.len(), 1, "only one packet in flight");
    s.handle(MonoMillis(2), Input::Appended { packet: first[0].0 });
    let out = drain(&mut s);
    assert_eq!(sends(&out), vec![Reply::Ack(1)]);
    let second = appended(&out);
    assert_eq!(second[0].1.len(), 2);
    // A stale confirmation changes nothing.
    s.handle(MonoMillis(3), Input::Appended { packet: first[0].0 });
    assert!(sends(&drain(&mut s)).is_empty());
    s.handle(
        MonoMillis(3),
        Input::Appended {
            packet: second[0].0,
        },
    );
    assert_eq!(sends(&drain(&mut s)), vec![Reply::Ack(2)]);
}

#[test]
fn any_split_of_the_bytes_gives_the_same_outcome() {
    let mut stream = encode_identity("356307042441013");
    stream.push(0xFF);
    stream.extend(packet(2));
    stream.push(0xFF);
    stream.extend(packet(1));
    for split in 1..stream.len() {
        let mut s = TcpSession::new(CONFIG, MonoMillis(0));
        let mut out = receive(&mut s, 0, &stream[..split]);
        if out.iter().any(|c| matches!(c, Command::CheckDevice(_))) {
            s.handle(MonoMillis(0), Input::DeviceChecked { allowed: true });
            out.extend(drain(&mut s));
        }
        out.extend(receive(&mut s, 0, &stream[split..]));
        if out.iter().any(|c| matches!(c, Command::CheckDevice(_)))
            && !sends(&out).contains(&Reply::Handshake(true))
        {
            s.handle(MonoMillis(0), Input::DeviceChecked { allowed: true });
            out.extend(drain(&mut s));
        }
        let appends = appended(&out);
        assert_eq!(appends.len(), 1, "split at {split}");
        assert_eq!(appends[0].1.len(), 2, "split at {split}");
        assert!(closed(&out).is_none(), "split at {split}: {out:?}");
    }
}

#[test]
fn refused_identities() {
    // not digits
    let mut s = TcpSession::new(CONFIG, MonoMillis(0));
    let out = receive(&mut s, 0, &encode_identity("35630704244101X"));
    assert_eq!(sends(&out), vec![Reply::Handshake(false)]);
    assert_eq!(closed(&out), Some(CloseReason::DeviceRefused));
    // longer than 64
    let mut s = TcpSession::new(CONFIG, MonoMillis(0));
    let out = receive(&mut s, 0, &[0, 65]);
    assert_eq!(sends(&out), vec![Reply::Handshake(false)]);
    assert_eq!(closed(&out), Some(CloseReason::DeviceRefused));
    // not on the allow-list
    let mut s = TcpSession::new(CONFIG, MonoMillis(0));
    receive(&mut s, 0, &encode_identity("1"));
    s.handle(MonoMillis(0), Input::DeviceChecked { allowed: false });
    let out = drain(&mut s);
    assert_eq!(sends(&out), vec![Reply::Handshake(false)]);
    assert!(out.contains(&Command::Observe(Observation::DeviceRejected("1".into()))));
    assert_eq!(closed(&out), Some(CloseReason::DeviceRefused));
    // an AVL packet before the handshake: closed unanswered
    let mut s = TcpSession::new(CONFIG, MonoMillis(0));
    let out = receive(&mut s, 0, &packet(1));
    assert!(sends(&out).is_empty());
    assert_eq!(closed(&out), Some(CloseReason::NoHandshake));
    // a keepalive before the handshake is no frame to answer
    let mut s = TcpSession::new(CONFIG, MonoMillis(0));
    assert!(receive(&mut s, 0, &[0xFF]).is_empty());
}

#[test]
fn bad_packets_are_skipped_until_the_bound_closes() {
    let mut s = handshaken();
    let mut bad_crc = packet(1);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    let out = receive(&mut s, 1, &bad_crc);
    assert!(sends(&out).is_empty() && appended(&out).is_empty() && closed(&out).is_none());
    // a good packet in between is still stored
    let out = receive(&mut s, 2, &packet(1));
    let good = appended(&out);
    assert_eq!(good.len(), 1);
    s.handle(MonoMillis(2), Input::Appended { packet: good[0].0 });
    assert_eq!(sends(&drain(&mut s)), vec![Reply::Ack(1)]);
    let mut unknown_codec = encode_data(Codec::Codec8, &[record(Codec::Codec8)]).unwrap();
    unknown_codec[0] = 0x0C;
    let out = receive(&mut s, 3, &encode_packet(&unknown_codec));
    assert!(out.contains(&Command::Observe(Observation::BadPacket {
        reason: BadPacket::Codec,
        head: unknown_codec.clone()
    })));
    assert!(closed(&out).is_none());
    let out = receive(&mut s, 4, &bad_crc);
    assert_eq!(closed(&out), Some(CloseReason::TooManyBadPackets));
    assert!(sends(&out).is_empty());
}

#[test]
fn a_fault_closes_after_answering_the_packets_before_it() {
    let mut s = handshaken();
    let mut bytes = packet(1);
    bytes.extend(packet(2));
    bytes.extend([0, 0, 0, 0, 0, 0, 0x10, 0]);
    let out = receive(&mut s, 1, &bytes);
    assert!(closed(&out).is_none());
    assert!(!s.wants_read());
    let first = appended(&out);
    s.handle(MonoMillis(2), Input::Appended { packet: first[0].0 });
    let out = drain(&mut s);
    let second = appended(&out);
    assert_eq!(sends(&out), vec![Reply::Ack(1)]);
    s.handle(
        MonoMillis(3),
        Input::Appended {
            packet: second[0].0,
        },
    );
    let out = drain(&mut s);
    assert_eq!(sends(&out), vec![Reply::Ack(2)]);
    assert_eq!(closed(&out), Some(CloseReason::Unframeable));
}

#[test]
fn an_unframeable_stream_closes_at_once() {
    let mut s = handshaken();
    let out = receive(&mut s, 1, &[0, 0, 0, 0, 0, 0, 0x10, 0]);
    assert_eq!(closed(&out), Some(CloseReason::Unframeable));
    assert!(matches!(
        out[0],
        Command::Observe(Observation::BadPacket {
            reason: BadPacket::Framing,
            ..
        })
    ));
}

#[test]
fn a_redis_failure_or_silence_closes_without_ack() {
    let mut s = handshaken();
    let a = appended(&receive(&mut s, 1, &packet(1)));
    s.handle(MonoMillis(2), Input::AppendFailed { packet: a[0].0 });
    let out = drain(&mut s);
    assert!(sends(&out).is_empty());
    assert!(out.contains(&Command::Observe(Observation::RedisError)));
    assert_eq!(closed(&out), Some(CloseReason::RedisError));

    let mut s = handshaken();
    appended(&receive(&mut s, 1, &packet(1)));
    assert_eq!(s.poll_timeout(), Some(MonoMillis(10_001)));
    s.handle(MonoMillis(10_000), Input::Tick);
    assert!(drain(&mut s).is_empty());
    s.handle(MonoMillis(10_001), Input::Tick);
    let out = drain(&mut s);
    assert!(sends(&out).is_empty());
    assert_eq!(closed(&out), Some(CloseReason::RedisError));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn idle_means_no_complete_frame() {
    let mut s = handshaken();
    assert_eq!(s.poll_timeout(), Some(MonoMillis(600_000)));
    // a keepalive is a frame
    receive(&mut s, 200, &[0xFF]);
    assert_eq!(s.poll_timeout(), Some(MonoMillis(600_200)));
    // half a packet is not
    let p = packet(1);
    receive(&mut s, 300, &p[..10]);
    assert_eq!(s.poll_timeout(), Some(MonoMillis(600_200)));
    s.handle(MonoMillis(600_199), Input::Tick);
    assert!(drain(&mut s).is_empty());
    s.handle(MonoMillis(600_200), Input::Tick);
    assert_eq!(closed(&drain(&mut s)), Some(CloseReason::Idle));
}

#[test]
fn stop_finishes_the_packet_in_flight_and_drops_the_rest() {
    let mut s = handshaken();
    let mut two = packet(1);
    two.extend(packet(1));
    let a = appended(&receive(&mut s, 1, &two));
    s.handle(MonoMillis(2), Input::Stop);
    assert!(!s.wants_read());
    assert!(drain(&mut s).is_empty());
    s.handle(MonoMillis(3), Input::Appended { packet: a[0].0 });
    let out = drain(&mut s);
    assert_eq!(sends(&out), vec![Reply::Ack(1)]);
    assert!(appended(&out).is_empty(), "the waiting packet is dropped");
    assert_eq!(closed(&out), Some(CloseReason::Shutdown));

    let mut idle = handshaken();
    idle.handle(MonoMillis(2), Input::Stop);
    assert_eq!(closed(&drain(&mut idle)), Some(CloseReason::Shutdown));
}

#[test]
fn reading_pauses_while_packets_wait() {
    let mut s = handshaken();
    assert!(s.wants_read());
    let mut three = packet(1);
    three.extend(packet(1));
    three.extend(packet(1));
    let a = appended(&receive(&mut s, 1, &three));
    assert!(!s.wants_read());
    s.handle(MonoMillis(2), Input::Appended { packet: a[0].0 });
    drain(&mut s);
    assert!(s.wants_read());
}

// ---- properties ----

fn io_value(codec: Codec) -> impl Strategy<Value = (u16, IoValue)> {
    let id = if codec == Codec::Codec8 {
        (0u16..=255).boxed()
    } else {
        any::<u16>().boxed()
    };
    let fixed = (prop::sample::select(vec![1u8, 2, 4, 8]), any::<u64>()).prop_map(|(w, v)| {
        let value = if w == 8 {
            v
        } else {
            v & ((1u64 << (w * 8)) - 1)
        };
        IoValue::Fixed { width: w, value }
    });
    let value = if codec == Codec::Codec8Extended {
        prop_oneof![
            3 => fixed,
            1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(IoValue::Bytes)
        ]
        .boxed()
    } else {
        fixed.boxed()
    };
    (id, value)
}

fn group_rank(v: &IoValue) -> u8 {
    match v {
        IoValue::Fixed { width, .. } => *width,
        IoValue::Bytes(_) => 16,
    }
}

fn avl_record(codec: Codec) -> impl Strategy<Value = AvlRecord> {
    let event = if codec == Codec::Codec8 {
        (0u16..=255).boxed()
    } else {
        any::<u16>().boxed()
    };
    (
        any::<u64>(),
        any::<u8>(),
        any::<i32>(),
        any::<i32>(),
        any::<i16>(),
        any::<u16>(),
        any::<u8>(),
        any::<u16>(),
        event,
        any::<u8>(),
        prop::collection::vec(io_value(codec), 0..12),
    )
        .prop_map(
            move |(ts, priority, lon, lat, alt, angle, sats, speed, event, gen, mut io)| {
                // The wire carries IO elements group by group.
                io.sort_by_key(|(_, v)| group_rank(v));
                AvlRecord {
                    timestamp_ms: ts,
                    priority,
                    longitude: lon,
                    latitude: lat,
                    altitude: alt,
                    angle,
                    satellites: sats,
                    speed,
                    event_io_id: event,
                    generation_type: (codec == Codec::Codec16).then_some(gen),
                    io,
                }
            },
        )
}

fn codec_and_records() -> impl Strategy<Value = (Codec, Vec<AvlRecord>)> {
    prop::sample::select(vec![Codec::Codec8, Codec::Codec8Extended, Codec::Codec16])
        .prop_flat_map(|codec| (Just(codec), prop::collection::vec(avl_record(codec), 1..5)))
}

fn crc_bitwise(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

proptest! {
    #[test]
    fn records_round_trip_through_every_codec((codec, records) in codec_and_records()) {
        let data = encode_data(codec, &records).unwrap();
        let decoded = decode_data(&data).unwrap();
        prop_assert_eq!(decoded.codec, codec);
        prop_assert_eq!(decoded.records, records);
    }

    #[test]
    fn the_table_crc_is_the_bitwise_crc(data in prop::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(crc16_ibm(&data), crc_bitwise(&data));
    }

    #[test]
    fn any_split_of_a_byte_stream_gives_the_same_frames(
        (codec, records) in codec_and_records(),
        keepalives in prop::collection::vec(any::<bool>(), 3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let packet = encode_packet(&encode_data(codec, &records).unwrap());
        let mut stream = Vec::new();
        for k in &keepalives {
            if *k { stream.push(0xFF); }
            stream.extend_from_slice(&packet);
        }
        let whole = frames(&[&stream]);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in at {
            pieces.push(&stream[from..cut]);
            from = cut;
        }
        pieces.push(&stream[from..]);
        prop_assert_eq!(frames(&pieces), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_session(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut s = TcpSession::new(CONFIG, MonoMillis(0));
        for (i, chunk) in chunks.iter().enumerate() {
            s.handle(MonoMillis(i as u64), Input::Received { bytes: chunk, received_at: UnixMillis(0) });
            while let Some(c) = s.poll_command() {
                if let Command::CheckDevice(_) = c {
                    s.handle(MonoMillis(i as u64), Input::DeviceChecked { allowed: true });
                }
            }
        }
    }
}

fn frames(pieces: &[&[u8]]) -> Vec<TcpFrame> {
    let mut framer = TcpFramer::default();
    let mut out = Vec::new();
    for piece in pieces {
        framer.push(piece);
        while let Ok(Some(frame)) = framer.next_frame(Expect::Packet, 4096) {
            out.push(frame);
        }
    }
    out
}

#[test]
fn entries_carry_source_and_arrival() {
    let imei = Imei::parse(b"356307042441013").unwrap();
    let data = decode_data(&encode_data(Codec::Codec8, &[record(Codec::Codec8)]).unwrap()).unwrap();
    let e = PacketEntries::new(&imei, &data, Transport::Tcp, UnixMillis(1_764_324_000_123));
    assert_eq!(e.source, "teltonika-tcp");
    assert_eq!(e.received_at, "1764324000123");
    assert_eq!(e.payloads.len(), 1);
    assert_eq!((e.len(), e.is_empty()), (1, false));
    let none = AvlData {
        records: Vec::new(),
        ..data
    };
    assert!(PacketEntries::new(&imei, &none, Transport::Udp, UnixMillis(0)).is_empty());
    assert_eq!(
        (Transport::Tcp.label(), Transport::Udp.label()),
        ("tcp", "udp")
    );
}

#[test]
fn a_value_wider_than_its_group_is_not_encoded() {
    let mut wide = record(Codec::Codec8);
    wide.io = vec![(
        21,
        IoValue::Fixed {
            width: 1,
            value: 256,
        },
    )];
    assert!(matches!(
        encode_data(Codec::Codec8, &[wide]),
        Err(processor_core::teltonika::EncodeError::TooWide { .. })
    ));
}

#[test]
fn a_session_knows_its_device_once_accepted_and_that_it_closed() {
    let fresh = TcpSession::new(CONFIG, MonoMillis(0));
    assert_eq!((fresh.imei(), fresh.is_closed()), (None, false));
    let mut s = handshaken();
    assert_eq!(
        s.imei().map(|i| i.to_string()),
        Some("356307042441013".to_owned())
    );
    let a = appended(&receive(&mut s, 1, &packet(1)));
    s.handle(MonoMillis(2), Input::AppendFailed { packet: a[0].0 });
    let out = drain(&mut s);
    assert_eq!(closed(&out), Some(CloseReason::RedisError));
    assert!(s.is_closed());
    assert_eq!(CloseReason::RedisError.as_str(), "redis error");
    assert_eq!(CloseReason::Idle.as_str(), "idle");
}

#[test]
fn a_data_field_holds_at_least_one_record() {
    assert_eq!(
        encode_data(Codec::Codec8, &[]),
        Err(processor_core::teltonika::EncodeError::RecordCount(0))
    );
}

#[test]
fn bad_packets_are_labelled_as_the_metric_names_them() {
    let labels: Vec<String> = BadPacket::ALL.iter().map(|b| b.to_string()).collect();
    assert_eq!(labels, ["framing", "crc", "codec", "count", "malformed"]);
    assert!(BadPacket::ALL.iter().all(|b| b.label() == b.to_string()));
}
