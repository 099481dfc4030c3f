//! Stream payloads: `processor_core::decode_position` must never panic, and what it accepts
//! must lie within the contract's ranges (see `processor_fuzz::check_decode_position`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    processor_fuzz::check_decode_position(data);
});
