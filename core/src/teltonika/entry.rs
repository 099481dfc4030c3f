//! The stream entries a packet becomes: one per record, in packet order, with the packet's
//! transport and arrival time.

use serde::Serialize;
use std::collections::BTreeMap;

use super::data::AvlData;
use super::hex::lower_hex;
use super::imei::Imei;
use super::record::{AvlRecord, IoValue};
use crate::UnixMillis;

/// How a packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Udp];

    /// The entry's `source` field.
    pub const fn source(self) -> &'static str {
        match self {
            Transport::Tcp => "teltonika-tcp",
            Transport::Udp => "teltonika-udp",
        }
    }

    /// The `transport` label of the gateway's metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A packet's records as stream entries: each entry has the fields `payload` (one of
/// `payloads`), `source` and `received_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketEntries {
    pub source: &'static str,
    /// Epoch milliseconds, in decimal, at which the packet's last byte arrived.
    pub received_at: String,
    pub payloads: Vec<String>,
}

impl PacketEntries {
    pub fn new(
        imei: &Imei,
        data: &AvlData,
        transport: Transport,
        received_at: UnixMillis,
    ) -> PacketEntries {
        PacketEntries {
            source: transport.source(),
            received_at: received_at.as_i64().to_string(),
            payloads: data
                .records
                .iter()
                .map(|record| payload(imei, record))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    device_id: &'a str,
    timestamp: u64,
    latitude: f64,
    longitude: f64,
    altitude: i16,
    angle: u16,
    satellites: u8,
    speed: u16,
    priority: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_io_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_type: Option<u8>,
    attributes: BTreeMap<u16, Attribute>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Attribute {
    Unsigned(u64),
    Hex(String),
}

/// Degrees x 10^7 as the nearest double: both operands are exact doubles, and IEEE division
/// rounds the exact quotient to nearest.
fn degrees(scaled: i32) -> f64 {
    f64::from(scaled) / 1e7
}

/// One record's `payload`: the §3 JSON object, values as decoded (downstream judges them).
pub fn payload(imei: &Imei, r: &AvlRecord) -> String {
    // An id repeated in a record keeps its last value: later inserts replace earlier ones.
    let attributes =
        r.io.iter()
            .map(|(id, value)| {
                let value = match value {
                    IoValue::Fixed { value, .. } => Attribute::Unsigned(*value),
                    IoValue::Bytes(bytes) => Attribute::Hex(lower_hex(bytes)),
                };
                (*id, value)
            })
            .collect();
    let payload = Payload {
        device_id: imei.as_str(),
        timestamp: r.timestamp_ms,
        latitude: degrees(r.latitude),
        longitude: degrees(r.longitude),
        altitude: r.altitude,
        angle: r.angle,
        satellites: r.satellites,
        speed: r.speed,
        priority: r.priority,
        event_io_id: (r.event_io_id != 0).then_some(r.event_io_id),
        generation_type: r.generation_type,
        attributes,
    };
    // Serializing plain numbers and strings into a String cannot fail; an empty object
    // would be dead-lettered downstream, never lost silently.
    serde_json::to_string(&payload).unwrap_or_else(|_| String::from("{}"))
}
