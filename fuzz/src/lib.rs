//! What every input must satisfy, shared by the fuzz targets and by the corpus replay test.
//!
//! `core/tests/fuzz_corpus.rs` includes this file with `#[path]`, so that a crash found by
//! the fuzzer and committed under `fuzz/artifacts/` or `fuzz/corpus/` fails an ordinary
//! `cargo test` too. Keep it free of dependencies beyond `processor_core` and `std`.
//!
//! Beyond "does not panic", the checks assert contract rules that hold for any input: a
//! decoded position lies within the ranges of contract section 3, and errors stay short
//! (they are logged and dead-lettered, so they must never carry the payload).

use processor_core::websocket::{ClientFrame, FrameReader};
use processor_core::wire::{parse_client_message, ClientMessage, Topic};
use processor_core::{decode_position, UnixMillis};

/// Longest error text accepted, in characters: enough for a field name and a rule, far
/// too short to smuggle a payload through.
const MAX_ERROR_CHARS: usize = 256;

/// Longest topic echoed back in a `bad_request`, in characters.
const MAX_ECHOED_TOPIC_CHARS: usize = 128;

/// Decodes `data` as a stream payload and checks the result against the contract.
pub fn check_decode_position(data: &[u8]) {
    match decode_position(data) {
        Ok(p) => {
            let id_chars = p.device_id.chars().count();
            assert!(
                (1..=64).contains(&id_chars),
                "device_id of {id_chars} chars"
            );
            assert!(
                (0..=UnixMillis::MAX_FIX.as_i64()).contains(&p.ts.as_i64()),
                "timestamp {} out of range",
                p.ts
            );
            assert!(
                (-90.0..=90.0).contains(&p.latitude),
                "latitude {}",
                p.latitude
            );
            assert!(
                (-180.0..=180.0).contains(&p.longitude),
                "longitude {}",
                p.longitude
            );
            assert!(p.altitude.is_finite(), "altitude {}", p.altitude);
            assert!((0.0..=360.0).contains(&p.angle), "angle {}", p.angle);
            assert!(p.speed >= 0.0 && p.speed.is_finite(), "speed {}", p.speed);
            assert!(p.priority <= 2, "priority {}", p.priority);
            // Storage serialises the attributes; that must not fail either.
            let _ = p.attributes_json();
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.chars().count() <= MAX_ERROR_CHARS,
                "decode error text of {} chars",
                text.chars().count()
            );
        }
    }
}

/// Parses `data` as a client text frame and checks the result against the contract.
pub fn check_client_message(data: &[u8]) {
    match parse_client_message(data) {
        Ok(ClientMessage::Subscribe(topic, _) | ClientMessage::Unsubscribe(topic)) => {
            // The server writes topics in one canonical form that parses back to itself.
            let text = topic.to_string();
            assert_eq!(text.parse::<Topic>().ok(), Some(topic), "topic {text}");
            assert_eq!(text, text.to_lowercase(), "topic {text} not lower case");
        }
        Ok(_) => {}
        Err(e) => {
            let _ = e.to_string();
            if let Some(topic) = &e.topic {
                assert!(
                    topic.chars().count() <= MAX_ECHOED_TOPIC_CHARS,
                    "echoed topic of {} chars",
                    topic.chars().count()
                );
            }
        }
    }
}

/// Largest message the frame checks allow (the service allows 64 KiB; smaller here so the
/// fuzzer reaches the limit).
const FRAME_LIMIT: usize = 1024;

/// Everything the reader makes of `data` fed whole.
pub fn read_client_frames(data: &[u8]) -> Vec<Result<ClientFrame, u16>> {
    let mut reader = FrameReader::new(FRAME_LIMIT);
    reader.push(data);
    std::iter::from_fn(|| reader.next())
        .map(|r| r.map_err(|e| e.close_code()))
        .collect()
}

/// Feeds `data` to the WebSocket frame reader whole and split at every tenth point: the
/// same frames either way, text always UTF-8, every error a close code RFC 6455 allows,
/// nothing after an error, and never more buffered than a frame at the limit.
pub fn check_client_frames(data: &[u8]) {
    let whole = read_client_frames(data);
    for (i, frame) in whole.iter().enumerate() {
        match frame {
            Ok(ClientFrame::Text(text)) => {
                assert!(std::str::from_utf8(text).is_ok(), "text frame not UTF-8");
                assert!(text.len() <= FRAME_LIMIT, "message over the limit");
            }
            Err(code) => {
                assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}");
                assert_eq!(i + 1, whole.len(), "frames after an error");
            }
            Ok(_) => {}
        }
    }
    let step = (data.len() / 10).max(1);
    for split in (0..data.len()).step_by(step) {
        let mut reader = FrameReader::new(FRAME_LIMIT);
        let mut got = Vec::new();
        for part in [&data[..split], &data[split..]] {
            reader.push(part);
            got.extend(std::iter::from_fn(|| reader.next()).map(|r| r.map_err(|e| e.close_code())));
            assert!(
                reader.buffered() <= 2 * (FRAME_LIMIT + 14) + data.len().min(16),
                "buffered {} bytes",
                reader.buffered()
            );
        }
        assert_eq!(got, whole, "split at {split}");
    }
}

use processor_core::teltonika::session::{Command, Input, Reply, SessionConfig, TcpSession};
use processor_core::teltonika::udp_judge::{judge_datagram, UdpVerdict};
use processor_core::teltonika::{decode_data, encode_data, AllowList};
use processor_core::MonoMillis;

/// A small packet bound, so that the fuzzer reaches it.
const TELTONIKA_LIMIT: usize = 512;

const SESSION: SessionConfig = SessionConfig {
    max_packet_bytes: TELTONIKA_LIMIT,
    max_bad_packets: 3,
    idle_timeout_ms: 1_000,
    ack_timeout_ms: 100,
};

/// What a gateway session makes of `pieces` read one after the other, every device admitted
/// and every append confirmed at once: the replies written and whether (why) it closed.
pub fn run_teltonika_session(pieces: &[&[u8]]) -> (Vec<Reply>, Option<String>) {
    let mut session = TcpSession::new(SESSION, MonoMillis(0));
    let mut replies = Vec::new();
    let mut closed = None;
    let mut appended_records = std::collections::VecDeque::new();
    for piece in pieces {
        session.handle(
            MonoMillis(0),
            Input::Received {
                bytes: piece,
                received_at: UnixMillis(0),
            },
        );
        while let Some(command) = session.poll_command() {
            assert!(closed.is_none(), "{command:?} after the close");
            match command {
                Command::Send(reply) => {
                    if let Reply::Ack(records) = reply {
                        // An ack answers the oldest confirmed packet, with its record count.
                        assert_eq!(appended_records.pop_front(), Some(records), "ack order");
                    }
                    replies.push(reply);
                }
                Command::CheckDevice(_) => {
                    session.handle(MonoMillis(0), Input::DeviceChecked { allowed: true })
                }
                Command::Append { packet, entries } => {
                    assert!((1..=255).contains(&entries.len()));
                    for payload in &entries.payloads {
                        // What the gateway writes is JSON the processor's decoder judges.
                        let _ = decode_position(payload.as_bytes());
                    }
                    appended_records.push_back(entries.len() as u32);
                    session.handle(MonoMillis(0), Input::Appended { packet });
                }
                Command::Observe(_) => {}
                Command::Close(reason) => closed = Some(reason.as_str().to_string()),
            }
        }
    }
    (replies, closed)
}

/// Feeds `data` to a gateway session whole and split at every tenth point (the same replies
/// and close either way, acks only for confirmed packets in order), and as a UDP datagram;
/// a data field that decodes re-encodes to the same records.
pub fn check_teltonika(data: &[u8]) {
    let whole = run_teltonika_session(&[data]);
    let step = (data.len() / 10).max(1);
    for split in (0..data.len()).step_by(step) {
        let got = run_teltonika_session(&[&data[..split], &data[split..]]);
        assert_eq!(got, whole, "split at {split}");
    }
    match judge_datagram(data, TELTONIKA_LIMIT, &AllowList::Everyone, UnixMillis(0)) {
        UdpVerdict::Append { entries, reply } => {
            assert_eq!(usize::from(reply[6]), entries.len(), "reply count");
        }
        UdpVerdict::Bad { head, .. } => assert!(head.len() <= 64),
        UdpVerdict::Rejected { .. } => panic!("everyone is admitted"),
    }
    if let Ok(avl) = decode_data(data) {
        let again = encode_data(avl.codec, &avl.records).map(|d| decode_data(&d));
        assert_eq!(again, Ok(Ok(avl)), "re-encoding changed the records");
    }
}
