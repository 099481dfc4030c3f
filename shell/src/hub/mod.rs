//! The live path's executor: runs the core's [`LiveHub`] against WebSocket connections,
//! the broadcast consumer, the device-to-event map and Postgres look-ups.
//!
//! [`LiveHub`]: processor_core::live::LiveHub

pub mod broadcast;
pub mod device_map;
pub mod input;
pub mod ports;
pub mod runner;

pub use input::{HubInput, Outbound};
pub use runner::{run, HubContext};
