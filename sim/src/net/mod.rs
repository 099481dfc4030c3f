//! The network layer (turmoil): the shell's own event loops, unchanged, on several processor
//! hosts, against in-memory Redis and Postgres on hosts of their own, reached over simulated
//! TCP through the shell's port traits, in simulated time. [`scenario`] runs the durable loop
//! alone; [`fanout`] runs whole instances (durable loop and live path) with WebSocket
//! clients on client hosts; [`gateway`] runs Teltonika trackers against gateway hosts in
//! front of the durable loop. Partitions, crashes and bounces happen on the wire and the
//! hosts, not in a model.

pub mod fanout;
pub mod gateway;
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

/// Seeds a plain `cargo test -p sim` runs through trackers, gateways and the durable path.
pub const GATEWAY_CI_SEEDS: usize = 30;
