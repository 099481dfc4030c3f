//! The live path's model layer: the real [`processor_core::live::Ingest`] and
//! [`processor_core::live::LiveHub`], unchanged, the hub split into shards as the shell runs
//! it, driven through seeded runs against in-memory stand-ins (a stream of positions, a
//! lagging positions store that answers history reads from its rows ([`store`]), an events
//! table whose visibility changes, clients with bounded or stalled sockets, tokens that
//! expire and are renewed or refused, bursts over the message rate, clients that resume,
//! ask for trails and steer replays), with every frame a client reads judged as it arrives
//! ([`checker`]), the rest judged against a reference model (its own token deadlines, claims
//! and token bucket, the fixes the live path accepted, each replay's clock among it), and
//! every connection's frames compared with what a single-shard hub fed the same inputs
//! gives it ([`driver`]). Planted defects ([`defect`]) show the judging has teeth.

pub mod checker;
pub mod defect;
pub mod driver;
pub mod store;

pub use checker::{LiveViolation, LiveViolationKind};
pub use defect::LiveDefect;
pub use driver::{run_live, LiveOptions, LiveReport, QUEUE_SLACK};

/// Seeds a plain `cargo test -p sim` runs through the live model.
pub const LIVE_CI_SEEDS: usize = 300;

/// Runs every seed, spread over the machine's cores; reports come back in seed order.
pub fn run_live_all(seeds: &[u64], options: &LiveOptions) -> Vec<LiveReport> {
    crate::seeds::run_parallel(seeds, |seed| run_live(seed, options))
}
