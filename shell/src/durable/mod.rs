//! The durable path's executor: runs the core's [`DurableWriter`] against Redis and Postgres.
//!
//! [`DurableWriter`]: processor_core::durable::DurableWriter

mod reader;
mod runner;

pub use runner::{run, DurableContext};
