//! The live path's executor: the core's ingest and hub shards run against WebSocket
//! connections, the broadcast consumer, the device-to-event map and Postgres look-ups.
//!
//! - [`broadcast`]: reads the stream, has the core's `Ingest` judge it once, and hands each
//!   batch to every shard.
//! - [`shard`]: one task per shard, each with its own core `LiveHub` and the connections
//!   given to it; it writes their sockets itself ([`conn_io`], [`socket`]).
//! - [`reader`]: one task per connection, reading client frames into its shard.
//! - [`device_map`]: reloads the device-to-event map for the ingest and every shard.
//! - [`live_path`]: starts all of them and stops them in the contract's order.

pub mod broadcast;
pub mod conn_io;
pub mod device_map;
pub mod input;
pub mod live_path;
pub mod ports;
pub mod reader;
pub mod shard;
pub mod socket;

pub use input::{ShardInput, Shards};
pub use live_path::{start, IngestPlacement, LivePlan, LiveTasks};
