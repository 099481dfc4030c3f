//! The WebSocket server on `LIVE_WS_ADDR`: `GET /live`, authenticated before the upgrade.

pub mod connection;
pub mod server;

pub use server::{serve, WsContext};
