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
        Ok(ClientMessage::Subscribe(topic) | ClientMessage::Unsubscribe(topic)) => {
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
