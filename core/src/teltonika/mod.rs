//! Teltonika trackers' own protocol (codecs 0x08, 0x8E and 0x10 over TCP and UDP), for the
//! gateway that turns their packets into stream entries.
//!
//! - [`tcp_frame`] cuts a TCP byte stream into the handshake, AVL packets and keepalives;
//!   [`udp`] reads a datagram whole.
//! - [`data`] decodes (and encodes) the records of a packet, with the checks in the
//!   contract's order ([`BadPacket`]).
//! - [`entry`] turns records into stream entries.
//! - [`session`] decides, for one TCP connection, when to answer, acknowledge and close;
//!   [`udp_judge`] does the same for a datagram, and [`udp_flights`] holds the datagrams
//!   whose appends run: their ack deadline and the bound on how many run at once.

pub mod allow_list;
pub mod bad;
pub mod crc;
pub mod data;
pub mod entry;
pub mod hex;
pub mod imei;
pub mod record;
pub mod session;
pub mod tcp_frame;
pub mod udp;
pub mod udp_flights;
pub mod udp_judge;

pub use allow_list::AllowList;
pub use bad::BadPacket;
pub use crc::crc16_ibm;
pub use data::{decode_data, encode_data, AvlData, EncodeError};
pub use entry::{PacketEntries, Transport};
pub use imei::Imei;
pub use record::{AvlRecord, Codec, IoValue};
pub use session::{
    CloseReason, Command, Input, Observation, PacketSeq, Reply, SessionConfig, TcpSession,
};
