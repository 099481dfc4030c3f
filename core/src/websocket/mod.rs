//! The WebSocket framing the live path speaks (RFC 6455), sans I/O.
//!
//! Server frames are unmasked, so a frame's bytes are the same for every recipient: a
//! position is encoded once, header and payload together ([`Frame`]), and the shell copies
//! those bytes to every subscriber's socket. Client frames are masked and may be fragmented;
//! [`FrameReader`] reassembles them into messages and decides which protocol violation
//! closes the connection with which code.

mod frame;
mod reader;

pub use frame::{Frame, Opcode};
pub use reader::{ClientFrame, FrameError, FrameReader, HARD_MESSAGE_LIMIT};
