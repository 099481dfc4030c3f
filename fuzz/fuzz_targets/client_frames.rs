//! WebSocket client bytes: `processor_core::websocket::FrameReader` must never panic, must
//! give the same frames however the bytes are split, and must end on an RFC 6455 close code
//! (see `processor_fuzz::check_client_frames`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    processor_fuzz::check_client_frames(data);
});
