//! What becomes of one UDP datagram: dropped unanswered, or appended and then answered.

use super::allow_list::AllowList;
use super::bad::BadPacket;
use super::entry::{PacketEntries, Transport};
use super::tcp_frame::LOGGED_HEAD;
use super::udp::{decode_datagram, encode_reply};
use crate::UnixMillis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpVerdict {
    /// Dropped unanswered; `head` is at most the datagram's first 64 bytes, for the log.
    Bad { reason: BadPacket, head: Vec<u8> },
    /// A sound datagram from a device the allow-list does not hold: dropped unanswered.
    Rejected { imei: String },
    /// XADD every entry; only when all are confirmed, send `reply` back to the sender.
    Append {
        entries: PacketEntries,
        reply: [u8; 7],
    },
}

pub fn judge_datagram(
    datagram: &[u8],
    max_bytes: usize,
    allow: &AllowList,
    received_at: UnixMillis,
) -> UdpVerdict {
    match decode_datagram(datagram, max_bytes) {
        Err(reason) => UdpVerdict::Bad {
            reason,
            head: datagram[..datagram.len().min(LOGGED_HEAD)].to_vec(),
        },
        Ok(packet) if !allow.admits(packet.imei.as_str()) => UdpVerdict::Rejected {
            imei: packet.imei.to_string(),
        },
        Ok(packet) => UdpVerdict::Append {
            entries: PacketEntries::new(&packet.imei, &packet.data, Transport::Udp, received_at),
            reply: encode_reply(&packet),
        },
    }
}
