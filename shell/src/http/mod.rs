//! The HTTP server on `LIVE_WS_ADDR`: `GET /live` (the WebSocket, authenticated before the
//! upgrade), the map page at `/`, `/events` and `/events/<id>`, and the tracks routes.

pub mod event_route;
pub mod listener;
pub mod server;
pub mod tracks_route;

pub use listener::Listener;
pub use server::{serve, WsContext};
