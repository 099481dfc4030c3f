//! Teltonika tracker bytes (TCP stream, UDP datagram, data field): the gateway's codec and
//! session must never panic, must answer the same however the bytes are split, and must
//! acknowledge only confirmed packets, in order (see `processor_fuzz::check_teltonika`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    processor_fuzz::check_teltonika(data);
});
