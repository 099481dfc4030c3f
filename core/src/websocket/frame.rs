//! Finished server-to-client frames.

use bytes::Bytes;

/// The longest header of an unmasked frame: 2 bytes plus a 64-bit length.
const MAX_HEADER: usize = 10;

/// Frame opcodes (RFC 6455, section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    pub const fn code(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub const fn from_code(code: u8) -> Option<Opcode> {
        match code {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    pub const fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One complete, unfragmented server frame: header and payload in one buffer, shared by
/// every recipient (cloning only bumps a reference count).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let payload = self.payload();
        match std::str::from_utf8(payload) {
            Ok(text) if self.opcode() == Some(Opcode::Text) => {
                write!(f, "Frame::Text({text})")
            }
            _ => write!(f, "Frame({:?}, {} bytes)", self.opcode(), payload.len()),
        }
    }
}

impl Frame {
    /// A text frame whose payload `write` appends to the buffer it is given. The payload is
    /// written once, after room for the longest header, which is then filled in front of
    /// it: one allocation, no copy.
    pub fn text_with(write: impl FnOnce(&mut Vec<u8>)) -> Frame {
        Frame::with(Opcode::Text, 160, write)
    }

    /// A text frame carrying `payload`, which must be UTF-8 (every caller passes JSON).
    pub fn text(payload: &[u8]) -> Frame {
        Frame::with(Opcode::Text, payload.len(), |buf| {
            buf.extend_from_slice(payload)
        })
    }

    /// A ping frame with an empty payload.
    pub fn ping() -> Frame {
        Frame::with(Opcode::Ping, 0, |_| {})
    }

    /// A pong frame echoing `payload` (at most 125 bytes: longer is cut there, though a
    /// client's ping payload never is, since [`FrameReader`](super::FrameReader) refuses
    /// control frames over 125 bytes).
    pub fn pong(payload: &[u8]) -> Frame {
        let payload = &payload[..payload.len().min(125)];
        Frame::with(Opcode::Pong, payload.len(), |buf| {
            buf.extend_from_slice(payload)
        })
    }

    /// A close frame with `code` and `reason` (cut at 123 bytes, on a character boundary).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = &reason.as_bytes()[..end];
        Frame::with(Opcode::Close, 2 + reason.len(), |buf| {
            buf.extend_from_slice(&code.to_be_bytes());
            buf.extend_from_slice(reason);
        })
    }

    fn with(opcode: Opcode, capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> Frame {
        let mut buf = Vec::with_capacity(MAX_HEADER + capacity);
        buf.resize(MAX_HEADER, 0);
        write(&mut buf);
        let len = buf.len() - MAX_HEADER;
        let mut header = [0u8; MAX_HEADER];
        header[0] = 0x80 | opcode.code();
        let header_len = if len < 126 {
            header[1] = len as u8;
            2
        } else if let Ok(short) = u16::try_from(len) {
            header[1] = 126;
            header[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = MAX_HEADER - header_len;
        buf[start..MAX_HEADER].copy_from_slice(&header[..header_len]);
        Frame {
            bytes: Bytes::from(buf).slice(start..),
            header_len: header_len as u8,
        }
    }

    /// The whole frame, as written to the socket.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The frame's length on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The payload, without the header.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[usize::from(self.header_len)..]
    }

    pub fn opcode(&self) -> Option<Opcode> {
        self.bytes.first().and_then(|b| Opcode::from_code(b & 0x0f))
    }

    /// The close code, for a close frame.
    pub fn close_code(&self) -> Option<u16> {
        match (self.opcode(), self.payload()) {
            (Some(Opcode::Close), [a, b, ..]) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_at_the_boundaries() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let payload = vec![b'x'; len];
            let frame = Frame::text(&payload);
            assert_eq!(frame.len(), len + header, "payload of {len}");
            assert_eq!(frame.payload(), &payload[..]);
            assert_eq!(frame.bytes()[0], 0x81);
        }
        assert_eq!(&Frame::text(&[b'x'; 126]).bytes()[1..4], &[126, 0, 126]);
        assert_eq!(
            &Frame::text(&vec![b'x'; 65_536]).bytes()[1..10],
            &[127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn close_frame_carries_code_and_cut_reason() {
        let frame = Frame::close(1013, "slow consumer");
        assert_eq!(&frame.bytes()[..4], &[0x88, 15, 0x03, 0xf5]);
        assert_eq!(frame.close_code(), Some(1013));
        let long = "é".repeat(100);
        let frame = Frame::close(1000, &long);
        assert_eq!(frame.payload().len(), 2 + 122);
        assert!(std::str::from_utf8(&frame.payload()[2..]).is_ok());
    }

    #[test]
    fn control_frames() {
        assert_eq!(Frame::ping().bytes().as_ref(), &[0x89, 0]);
        assert_eq!(Frame::pong(b"ab").bytes().as_ref(), &[0x8a, 2, b'a', b'b']);
    }

    #[test]
    fn a_frame_is_never_empty_and_shows_its_text() {
        assert!(!Frame::ping().is_empty());
        assert_eq!(format!("{:?}", Frame::text(b"hi")), "Frame::Text(hi)");
        assert_eq!(
            format!("{:?}", Frame::pong(b"hi")),
            "Frame(Some(Pong), 2 bytes)"
        );
    }
}
