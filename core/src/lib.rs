//! Sans-I/O core of the processor.
//!
//! Everything that decides lives here: decoding stream payloads, the faulty-position rules,
//! the WebSocket wire messages and the state machines of the durable and live paths. Nothing
//! in this crate reads a clock, touches a socket or draws a random number: time enters as a
//! [`UnixMillis`] input, and effects leave as commands for the shell to execute.
//!
//! Public surface, by concern:
//! - [`decode_position`] turns a stream payload into a [`Position`] or a [`CodecError`].
//! - [`faulty::fault_reason`] applies the stateless faulty rules.
//! - [`wire`] parses client messages and encodes server messages.
//! - [`websocket`] frames server messages once and reads client frames.
//! - [`stream`] names stream entries and their ids.
//! - [`durable`] is the durable-write state machine.
//! - [`teltonika`] is the trackers' protocol and the gateway's session machine.

pub mod admin;
pub mod backoff;
pub mod decode;
pub mod durable;
pub mod faulty;
pub mod live;
pub mod millis;
pub mod mono;
pub mod position;
pub mod stream;
pub mod teltonika;
pub mod trim;
pub mod ttl_cache;
pub mod websocket;
pub mod wire;

pub use decode::{decode_position, CodecError, MAX_PAYLOAD_BYTES};
pub use millis::UnixMillis;
pub use mono::{MonoMillis, Now};
pub use position::{AttributeValue, Position};
