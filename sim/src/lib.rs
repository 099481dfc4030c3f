//! Deterministic simulation of the processor.
//!
//! Three parts: the durable model layer (below), the live hub's model layer ([`live`]), and
//! the network layer ([`net`]: the shell's durable loop on turmoil hosts).
//!
//! The durable model layer: the durable writer
//! ([`processor_core::durable::DurableWriter`]) runs, unchanged, against in-memory stand-ins
//! for the Redis stream and its consumer group ([`stream`]) and for the positions table
//! ([`store`]), with every latency, ordering, fault and payload drawn from one `u64` seed
//! ([`rng`]). Several instances share the stand-ins ([`world`]); a driver ([`swarm`]) takes
//! them through a phase of faults, a phase of healing and a shutdown, with the fault
//! probabilities themselves drawn from the seed ([`faults`]); an observer kept apart from the
//! system ([`checker`]) judges every event and the final state. Every command and input is
//! hashed into a [`trace`], so a seed replays exactly, and a failure names the seed
//! ([`seeds`]). Planted defects ([`defect`]) show that the checker catches what it should.
//!
//! Nothing here reads a clock, sleeps, or iterates a `HashMap` (the network layer sleeps in
//! turmoil's simulated time only).

pub mod checker;
pub mod defect;
pub mod faults;
pub mod finding;
pub mod instance;
pub mod live;
pub mod net;
pub mod op;
pub mod report;
pub mod rfc3339;
pub mod rng;
pub mod seeds;
pub mod store;
pub mod stream;
pub mod swarm;
pub mod trace;
pub mod traffic;
pub mod world;
