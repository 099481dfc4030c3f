//! WebSocket client text frames: `processor_core::wire::parse_client_message` must never
//! panic, and its topics must round-trip (see `processor_fuzz::check_client_message`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    processor_fuzz::check_client_message(data);
});
