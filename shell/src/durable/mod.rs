//! The durable path's executor: runs the core's [`DurableWriter`] against the stream, the
//! positions store and the clock of [`ports`] (Redis, Postgres and the wall clock in the
//! service; in-memory servers and simulated time in the simulation).
//!
//! [`DurableWriter`]: processor_core::durable::DurableWriter

pub mod ports;
mod reader;
mod runner;

pub use runner::{run, DurableContext};
