//! Teltonika over UDP: each datagram stands alone (no handshake, no CRC) and carries the
//! IMEI and the data; the reply echoes its ids and the record count.

use super::bad::BadPacket;
use super::data::{decode_data, AvlData};
use super::imei::Imei;

/// A sound datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket {
    pub packet_id: u16,
    pub avl_packet_id: u8,
    pub imei: Imei,
    pub data: AvlData,
}

/// Decodes a datagram of at most `max_bytes`, with the checks of a TCP packet in the same
/// order (a wrong length field or an oversized datagram is `framing`, a bad IMEI is
/// `malformed`).
pub fn decode_datagram(datagram: &[u8], max_bytes: usize) -> Result<UdpPacket, BadPacket> {
    if datagram.len() > max_bytes {
        return Err(BadPacket::Framing);
    }
    let Some((len, rest)) = datagram.split_first_chunk::<2>() else {
        return Err(BadPacket::Framing);
    };
    if usize::from(u16::from_be_bytes(*len)) != rest.len() {
        return Err(BadPacket::Framing);
    }
    let Some((header, rest)) = rest.split_first_chunk::<6>() else {
        return Err(BadPacket::Malformed);
    };
    let packet_id = u16::from_be_bytes([header[0], header[1]]);
    let avl_packet_id = header[3];
    let imei_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let (imei, data) = rest
        .split_at_checked(imei_len)
        .ok_or(BadPacket::Malformed)?;
    let data = decode_data(data)?;
    let imei = Imei::parse(imei).ok_or(BadPacket::Malformed)?;
    Ok(UdpPacket {
        packet_id,
        avl_packet_id,
        imei,
        data,
    })
}

/// The acknowledgement of a datagram whose records are all on the stream.
pub fn encode_reply(packet: &UdpPacket) -> [u8; 7] {
    let id = packet.packet_id.to_be_bytes();
    [
        0x00,
        0x05,
        id[0],
        id[1],
        0x01,
        packet.avl_packet_id,
        packet.data.records.len() as u8,
    ]
}

/// A datagram as a tracker sends it, around an encoded data field.
pub fn encode_datagram(packet_id: u16, avl_packet_id: u8, imei: &str, data: &[u8]) -> Vec<u8> {
    let body = 6 + imei.len() + data.len();
    let mut out = Vec::with_capacity(2 + body);
    out.extend_from_slice(&(body as u16).to_be_bytes());
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.push(0x01);
    out.push(avl_packet_id);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out.extend_from_slice(data);
    out
}
