//! Client-to-server frames: reassembly into messages and the protocol rules that end a
//! connection (RFC 6455, sections 5 and 7.4.1).

use bytes::Bytes;

use super::frame::Opcode;
use crate::live::close_code;

/// One message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// A complete text message, valid UTF-8, all its fragments together.
    Text(Bytes),
    /// A complete binary message (its content is not kept: the protocol has none).
    Binary,
    /// A ping; the payload is to be echoed in the pong.
    Ping(Bytes),
    Pong,
    /// The client's close frame, with its code when it gave one.
    Close(Option<u16>),
}

/// A violation that ends the connection, with the close code RFC 6455 gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Framing error: unmasked frame, reserved bits or opcode, oversized or fragmented
    /// control frame, stray or missing continuation, bad close payload (1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message (or close reason) that is not UTF-8 (1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A message over the reader's limit, all its frames together (1009).
    #[error("message too big")]
    TooLarge,
}

impl FrameError {
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
            FrameError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            FrameError::TooLarge => close_code::MESSAGE_TOO_BIG,
        }
    }

    pub fn close_reason(self) -> &'static str {
        match self {
            FrameError::Protocol(why) => why,
            FrameError::InvalidUtf8 => "invalid UTF-8 in a text message",
            FrameError::TooLarge => super::super::live::close_reason::MESSAGE_TOO_BIG,
        }
    }
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
}

/// Bytes in, client frames out. After an error it yields nothing more: the connection is
/// to be closed.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    partial: Option<Partial>,
    max_message: usize,
    failed: bool,
}

/// A message over this size, all its frames together, closes the connection with 1009
/// (contract section 5); smaller ones over `LIVE_WS_MAX_MESSAGE_BYTES` get `bad_request`.
pub const HARD_MESSAGE_LIMIT: usize = 64 * 1024;

/// Buffers that grew past this are given back once empty, so a burst does not leave an
/// idle connection holding memory.
const KEEP_CAPACITY: usize = 4 * 1024;

impl FrameReader {
    /// A reader that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            partial: None,
            max_message,
            failed: false,
        }
    }

    /// Bytes as they arrived from the socket.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet a complete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// The next complete message or control frame, or the error that ends the connection;
    /// `None` while more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<ClientFrame, FrameError>> {
        if self.failed {
            return None;
        }
        loop {
            match self.next_frame() {
                Ok(None) => {
                    if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
                        self.buf = Vec::new();
                    }
                    return None;
                }
                Ok(Some(Some(frame))) => return Some(Ok(frame)),
                Ok(Some(None)) => continue,
                Err(error) => {
                    self.failed = true;
                    self.buf = Vec::new();
                    self.partial = None;
                    return Some(Err(error));
                }
            }
        }
    }

    /// `Ok(None)`: incomplete; `Ok(Some(None))`: a fragment was taken, no message yet.
    fn next_frame(&mut self) -> Result<Option<Option<ClientFrame>>, FrameError> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, rsv, op, masked) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0f, b[1] & 0x80);
        if rsv != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let opcode = Opcode::from_code(op).ok_or(FrameError::Protocol("reserved opcode"))?;
        if masked == 0 {
            return Err(FrameError::Protocol("unmasked client frame"));
        }
        let (len, len_bytes) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 2),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n), 8)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 0),
        };
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::Protocol("fragmented control frame"));
            }
            if len > 125 {
                return Err(FrameError::Protocol("control frame over 125 bytes"));
            }
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len()) as u64;
        if !opcode.is_control() && so_far.saturating_add(len) > self.max_message as u64 {
            return Err(FrameError::TooLarge);
        }
        let header = 2 + len_bytes + 4;
        let len = len as usize;
        if b.len() < header + len {
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&b[header - 4..header]);
        let mut payload: Vec<u8> = b[header..header + len].to_vec();
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        self.buf.drain(..header + len);
        match opcode {
            Opcode::Ping => Ok(Some(Some(ClientFrame::Ping(Bytes::from(payload))))),
            Opcode::Pong => Ok(Some(Some(ClientFrame::Pong))),
            Opcode::Close => close_frame(&payload).map(|f| Some(Some(f))),
            Opcode::Text | Opcode::Binary => {
                if self.partial.is_some() {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                let text = opcode == Opcode::Text;
                if fin {
                    return message(text, payload).map(|m| Some(Some(m)));
                }
                self.partial = Some(Partial {
                    text,
                    data: payload,
                });
                Ok(Some(None))
            }
            Opcode::Continuation => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                partial.data.extend_from_slice(&payload);
                if fin {
                    return message(partial.text, partial.data).map(|m| Some(Some(m)));
                }
                self.partial = Some(partial);
                Ok(Some(None))
            }
        }
    }
}

fn message(text: bool, data: Vec<u8>) -> Result<ClientFrame, FrameError> {
    if !text {
        return Ok(ClientFrame::Binary);
    }
    if std::str::from_utf8(&data).is_err() {
        return Err(FrameError::InvalidUtf8);
    }
    Ok(ClientFrame::Text(Bytes::from(data)))
}

fn close_frame(payload: &[u8]) -> Result<ClientFrame, FrameError> {
    match payload {
        [] => Ok(ClientFrame::Close(None)),
        [_] => Err(FrameError::Protocol("close frame with a 1-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(FrameError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::InvalidUtf8);
            }
            Ok(ClientFrame::Close(Some(code)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65_535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn read_all(bytes: &[u8]) -> Vec<Result<ClientFrame, FrameError>> {
        let mut reader = FrameReader::new(64 * 1024);
        reader.push(bytes);
        std::iter::from_fn(|| reader.next()).collect()
    }

    #[test]
    fn any_split_gives_the_same_frames() {
        let mut stream = frame(true, 1, br#"{"type":"ping"}"#);
        stream.extend(frame(false, 1, b"ab"));
        stream.extend(frame(true, 9, b"p"));
        stream.extend(frame(true, 0, b"cd"));
        stream.extend(frame(true, 1, &vec![b'x'; 300]));
        let whole = read_all(&stream);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[2], Ok(ClientFrame::Text(Bytes::from_static(b"abcd"))));
        for split in 0..stream.len() {
            let mut reader = FrameReader::new(64 * 1024);
            let mut got = Vec::new();
            reader.push(&stream[..split]);
            got.extend(std::iter::from_fn(|| reader.next()));
            reader.push(&stream[split..]);
            got.extend(std::iter::from_fn(|| reader.next()));
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn violations_and_their_codes() {
        let unmasked = [0x81u8, 1, b'x'];
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (unmasked.to_vec(), 1002),
            (frame(true, 0x1 | 0x40, b"x"), 1002),
            (frame(true, 0x3, b"x"), 1002),
            (frame(false, 0x9, b"x"), 1002),
            (frame(true, 0x9, &[0; 126]), 1002),
            (frame(true, 0x0, b"x"), 1002),
            (frame(true, 0x1, &[0xff, 0xfe]), 1007),
            (frame(true, 0x8, &[3]), 1002),
            (frame(true, 0x8, &[0x03, 0xed]), 1002),
            (frame(true, 0x1, &vec![b'x'; 64 * 1024 + 1]), 1009),
        ];
        for (bytes, code) in cases {
            let got = read_all(&bytes);
            assert_eq!(got.len(), 1, "{bytes:?}");
            assert_eq!(got[0].clone().err().map(FrameError::close_code), Some(code));
        }
        let mut nested = frame(false, 1, b"a");
        nested.extend(frame(true, 1, b"b"));
        assert_eq!(
            read_all(&nested),
            vec![Err(FrameError::Protocol(
                "new message inside a fragmented one"
            ))]
        );
    }

    #[test]
    fn too_large_is_known_from_the_header_alone() {
        let mut reader = FrameReader::new(1024);
        reader.push(&frame(true, 1, &[b'x'; 2000])[..8]);
        assert_eq!(reader.next(), Some(Err(FrameError::TooLarge)));
        assert_eq!(reader.next(), None);
    }

    #[test]
    fn close_and_binary() {
        assert_eq!(
            read_all(&frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e'])),
            vec![Ok(ClientFrame::Close(Some(1000)))]
        );
        assert_eq!(
            read_all(&frame(true, 8, &[])),
            vec![Ok(ClientFrame::Close(None))]
        );
        assert_eq!(
            read_all(&frame(true, 2, &[0xff])),
            vec![Ok(ClientFrame::Binary)]
        );
    }

    #[test]
    fn what_is_buffered_counts_the_fragments_taken_and_the_bytes_waiting() {
        let mut reader = FrameReader::new(64 * 1024);
        let mut bytes = frame(false, 1, b"abc");
        let next = frame(true, 0, b"de");
        bytes.extend_from_slice(&next[..2]);
        reader.push(&bytes);
        assert_eq!(reader.next(), None);
        assert_eq!(reader.buffered(), 3 + 2);
        reader.push(&next[2..]);
        assert_eq!(
            reader.next(),
            Some(Ok(ClientFrame::Text(Bytes::from_static(b"abcde"))))
        );
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn two_bytes_are_enough_to_refuse_an_unmasked_frame() {
        let mut reader = FrameReader::new(64 * 1024);
        reader.push(&[0x81, 0x00]);
        assert!(matches!(reader.next(), Some(Err(FrameError::Protocol(_)))));
    }

    #[test]
    fn a_large_frame_half_read_keeps_its_bytes() {
        let payload = vec![b'x'; 5_000];
        let bytes = frame(true, 1, &payload);
        let mut reader = FrameReader::new(64 * 1024);
        reader.push(&bytes[..4_500]);
        assert_eq!(reader.next(), None);
        reader.push(&bytes[4_500..]);
        assert_eq!(
            reader.next(),
            Some(Ok(ClientFrame::Text(Bytes::from(payload))))
        );
    }

    #[test]
    fn limits_hold_at_exactly_their_bound() {
        // A control frame of 125 bytes is read; a message of exactly the maximum too.
        assert_eq!(
            read_all(&frame(true, 9, &[b'p'; 125])),
            vec![Ok(ClientFrame::Ping(Bytes::from_static(&[b'p'; 125])))]
        );
        let mut reader = FrameReader::new(10);
        reader.push(&frame(true, 1, b"0123456789"));
        assert_eq!(
            reader.next(),
            Some(Ok(ClientFrame::Text(Bytes::from_static(b"0123456789"))))
        );
        let mut reader = FrameReader::new(10);
        reader.push(&frame(true, 1, b"0123456789a"));
        assert_eq!(reader.next(), Some(Err(FrameError::TooLarge)));
        // A 64-bit length not all here yet: wait for it.
        let mut reader = FrameReader::new(64 * 1024);
        reader.push(&[0x81, 0xff, 0, 0]);
        assert_eq!(reader.next(), None);
    }
}
