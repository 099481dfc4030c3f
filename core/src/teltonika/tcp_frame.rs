//! Cuts a tracker's TCP byte stream into frames, whatever the reads' boundaries: the IMEI
//! handshake first, then AVL packets, with one-byte keepalives anywhere a frame may start.

use super::crc::crc16_ibm;
use super::imei::MAX_IMEI_LEN;

/// The byte a tracker sends, where a frame would start, to keep its connection open.
pub const KEEPALIVE: u8 = 0xFF;

/// Preamble and length before the data, CRC after it.
pub const PACKET_OVERHEAD: usize = 12;

/// A whole frame cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpFrame {
    Keepalive,
    /// The handshake's identity bytes, not yet judged.
    Identity(Vec<u8>),
    /// A handshake length of 0: an AVL packet before the handshake.
    NoIdentity,
    /// A handshake length over 64: no identity is that long, so its bytes are not awaited.
    IdentityTooLong,
    /// An AVL packet whose framing and CRC are sound: its data field.
    Packet(Vec<u8>),
    /// An AVL packet whose CRC is wrong; `head` is the packet's first 64 bytes, for the log.
    BadCrc {
        head: Vec<u8>,
    },
}

/// The byte stream cannot be framed any more (preamble not 0, a length out of bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unframeable {
    pub head: Vec<u8>,
}

/// What a frame is expected to be next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Identity,
    Packet,
}

/// Bytes received and not yet framed; never more than one packet's worth.
#[derive(Debug, Default)]
pub struct TcpFramer {
    buf: Vec<u8>,
}

/// How many leading bytes of a bad frame go to the log.
pub const LOGGED_HEAD: usize = 64;

impl TcpFramer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet make a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed. `max_packet_bytes`
    /// bounds an AVL packet from preamble to CRC.
    pub fn next_frame(
        &mut self,
        expect: Expect,
        max_packet_bytes: usize,
    ) -> Result<Option<TcpFrame>, Unframeable> {
        if self.buf.first() == Some(&KEEPALIVE) {
            self.consume(1);
            return Ok(Some(TcpFrame::Keepalive));
        }
        match expect {
            Expect::Identity => Ok(self.identity()),
            Expect::Packet => self.packet(max_packet_bytes),
        }
    }

    fn identity(&mut self) -> Option<TcpFrame> {
        let header = self.buf.first_chunk::<2>()?;
        let n = usize::from(u16::from_be_bytes(*header));
        if n == 0 || n > MAX_IMEI_LEN {
            // Nothing after this is read: the connection is closed.
            self.buf = Vec::new();
            return Some(if n == 0 {
                TcpFrame::NoIdentity
            } else {
                TcpFrame::IdentityTooLong
            });
        }
        if self.buf.len() < 2 + n {
            return None;
        }
        let identity = self.buf[2..2 + n].to_vec();
        self.consume(2 + n);
        Some(TcpFrame::Identity(identity))
    }

    fn packet(&mut self, max_packet_bytes: usize) -> Result<Option<TcpFrame>, Unframeable> {
        // A non-zero preamble byte is known as soon as it arrives; no need to wait for more.
        if self.buf.iter().take(4).any(|&b| b != 0) {
            return Err(self.unframeable());
        }
        let Some(header) = self.buf.first_chunk::<8>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let total = length.saturating_add(PACKET_OVERHEAD);
        if length < 3 || total > max_packet_bytes {
            return Err(self.unframeable());
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let data = &self.buf[8..8 + length];
        let crc_field = &self.buf[8 + length..total];
        let sound = crc_field[..2] == [0, 0]
            && u16::from_be_bytes([crc_field[2], crc_field[3]]) == crc16_ibm(data);
        let frame = if sound {
            TcpFrame::Packet(data.to_vec())
        } else {
            TcpFrame::BadCrc { head: self.head() }
        };
        self.consume(total);
        Ok(Some(frame))
    }

    fn head(&self) -> Vec<u8> {
        self.buf[..self.buf.len().min(LOGGED_HEAD)].to_vec()
    }

    fn unframeable(&mut self) -> Unframeable {
        let head = self.head();
        self.buf = Vec::new();
        Unframeable { head }
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        if self.buf.is_empty() && self.buf.capacity() > 1024 {
            // An idle connection should not keep its largest packet's buffer.
            self.buf = Vec::new();
        }
    }
}

/// The handshake frame for `imei`.
pub fn encode_identity(imei: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + imei.len());
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out
}

/// A whole TCP AVL packet around `data`: preamble, length, data, CRC.
pub fn encode_packet(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + PACKET_OVERHEAD);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&u32::from(crc16_ibm(data)).to_be_bytes());
    out
}
