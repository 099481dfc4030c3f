//! The WebSocket server on `LIVE_WS_ADDR`: `GET /live`, authenticated before the upgrade.

pub mod event_route;
pub mod listener;
pub mod server;
pub mod tracks_route;

pub use listener::Listener;
pub use server::{serve, WsContext};
