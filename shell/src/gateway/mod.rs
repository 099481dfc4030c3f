//! `processor gateway`: Teltonika trackers over TCP and UDP to the telemetry stream. The
//! core's session ([`processor_core::teltonika`]) decides; this module reads sockets,
//! XADDs, and writes what the session says, when it says.

pub mod allow_list;
pub mod appender;
pub mod config;
pub mod connection;
pub mod metrics;
pub mod run;
pub mod tcp;
pub mod udp;

pub use config::{GatewayCli, GatewayConfig};
pub use run::{run, GatewayError};
