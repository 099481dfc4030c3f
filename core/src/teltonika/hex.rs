//! Bytes as lowercase hex: NX IO values in entries, and the head of a bad packet in logs.

use std::fmt::Write;

pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
