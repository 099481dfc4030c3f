//! [`Input`]: everything [`DurableWriter`](super::DurableWriter) is told, one type for the
//! shell, the simulation and the tests.

use super::command::{ClaimResult, DeadLetterId, WriteFailure, WriteId};
use crate::stream::StreamEntry;

/// What happened since the writer was last told: time passed, a stop was asked for, or a
/// command it issued came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (the deadline of `poll_timeout`, or any wake-up).
    Timeout,
    /// Stop reading and claiming; settle what is held.
    Shutdown,
    /// The answer to a `Command::Read`.
    Read(Result<Vec<StreamEntry>, StreamFailure>),
    /// One page of the answer to a `Command::Claim`.
    Claimed(Result<ClaimResult, StreamFailure>),
    /// The outcome of a `Command::Write`: `Ok(rows newly inserted)` once committed.
    Written(WriteId, Result<u64, WriteFailure>),
    /// The outcome of a `Command::DeadLetter`.
    DeadLettered(DeadLetterId, Result<(), StreamFailure>),
    /// The outcome of a `Command::Ack`.
    Acked(Result<(), StreamFailure>),
}

/// A stream command that failed: connection lost, group missing, timed out. Every failure
/// of the stream port is decided alike (the writer retries or drains again); the reason is
/// for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure(pub String);

impl StreamFailure {
    pub fn new(reason: impl std::fmt::Display) -> StreamFailure {
        StreamFailure(reason.to_string())
    }
}

impl std::fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamFailure {
    fn from(reason: &str) -> StreamFailure {
        StreamFailure(reason.to_owned())
    }
}

impl From<String> for StreamFailure {
    fn from(reason: String) -> StreamFailure {
        StreamFailure(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_as_its_reason() {
        assert_eq!(StreamFailure::new("NOGROUP").to_string(), "NOGROUP");
        assert_eq!(
            StreamFailure::from("reset"),
            StreamFailure("reset".to_owned())
        );
    }
}
