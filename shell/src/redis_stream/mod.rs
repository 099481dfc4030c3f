//! The telemetry stream in Redis: consumer groups, reads, claims, acks and dead letters.
//!
//! Commands are sent as raw Redis commands and their replies parsed by hand ([`reply`]): an
//! entry deleted while pending comes back with nil fields, which typed reply helpers reject.

pub mod broadcast;
pub mod connect;
pub mod group;
pub mod reply;
pub mod trim;

pub use connect::{blocking_connection, control_connection};
pub use group::{DurableStream, StreamError};
