//! The live path's executors: authentication of WebSocket clients.

pub mod auth;
