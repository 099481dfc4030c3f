//! Why a packet was refused, in the order the checks run.

use std::fmt;

/// The reason a Teltonika packet is bad; its [`label`](BadPacket::label) is the `reason`
/// label of `processor_gateway_bad_packets_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadPacket {
    /// Preamble not 0, a data length under 3 or over the packet bound, a UDP length field
    /// that is not the datagram's size: the byte stream cannot be framed any more.
    Framing,
    /// The CRC field differs from the data's CRC-16/IBM.
    Crc,
    /// A codec other than 0x08, 0x8E and 0x10.
    Codec,
    /// No records, or the two record counts differ.
    Count,
    /// The records do not fill the data exactly (or a UDP datagram's IMEI is bad).
    Malformed,
}

impl BadPacket {
    pub const ALL: [BadPacket; 5] = [
        BadPacket::Framing,
        BadPacket::Crc,
        BadPacket::Codec,
        BadPacket::Count,
        BadPacket::Malformed,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            BadPacket::Framing => "framing",
            BadPacket::Crc => "crc",
            BadPacket::Codec => "codec",
            BadPacket::Count => "count",
            BadPacket::Malformed => "malformed",
        }
    }
}

impl fmt::Display for BadPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
