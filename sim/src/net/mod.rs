//! The network layer (turmoil): the shell's own durable event loop (`processor_shell::durable`),
//! unchanged, on several processor hosts, against in-memory Redis and Postgres on hosts of
//! their own, reached over simulated TCP through the shell's port traits, in simulated time.
//! Partitions, crashes and bounces happen on the wire and the hosts, not in a model.
//!
//! Not yet here: the live path (the hub runner, the broadcast consumer and WebSocket clients
//! over simulated TCP).

pub mod fanout;
pub mod instance;
pub mod live_ports;
pub mod live_server;
pub mod ports;
pub mod scenario;
pub mod schedule;
pub mod servers;
pub mod ws_client;

pub use scenario::{run_net, run_net_with, NetReport};

/// Seeds a plain `cargo test -p sim` runs through the network layer.
pub const NET_CI_SEEDS: usize = 60;

/// Seeds a plain `cargo test -p sim` runs through the live path over the network.
pub const FANOUT_CI_SEEDS: usize = 30;
