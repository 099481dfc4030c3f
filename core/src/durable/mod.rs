//! The durable-write state machine (contract sections 1, 3, 4 and 6).
//!
//! [`DurableWriter`] takes what the shell read from the stream and what Postgres answered,
//! and tells the shell what to do next: read, claim, write, dead-letter, ack. Its rules:
//!
//! - an entry is acked only after the write that stores it has committed, or after it has
//!   been copied to the dead-letter stream;
//! - a decode error is dead-lettered at once (retrying cannot help);
//! - duplicates (same device and fix time) inside a read are written once, and acked together;
//! - a write that fails for a transient cause (Postgres away, deadlock) is retried as it is,
//!   with back-off, without touching delivery counts;
//! - a write that Postgres rejects for its data is split in halves until the bad row stands
//!   alone; that row's entries stay pending for a later delivery, and are dead-lettered once
//!   they have been delivered `max_deliveries` times;
//! - after start, a read failure or a reconnect, this consumer's own pending entries are read
//!   again before new ones.

mod command;
mod config;
mod input;
mod machine;

pub use command::{
    ClaimResult, Command, DeadLetter, DeadLetterId, ReadFrom, WriteFailure, WriteId, WriteRow,
};
pub use config::DurableConfig;
pub use input::{Input, StreamFailure};
pub use machine::{DurableStats, DurableWriter};
