//! What the durable writer asks the shell to do, and the shapes of the answers.

use std::sync::Arc;

use bytes::Bytes;

use crate::stream::{EntryId, StreamEntry};
use crate::{Position, UnixMillis};

/// Identifies one write so its outcome can be matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Identifies one dead-letter batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadLetterId(pub u64);

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// This consumer's own pending entries with ids above `after` (`XREADGROUP ... <after>`).
    Pending { after: EntryId },
    /// Entries never delivered to the group (`XREADGROUP ... >`).
    New,
}

/// One row to store: a position and the entries that carried it (more than one when the
/// same device and fix time came several times).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRow {
    pub position: Position,
    pub faulty: bool,
    pub received_at: UnixMillis,
    /// The entries this row stores, with their delivery counts.
    pub entries: Vec<(EntryId, u64)>,
    /// The original payload of each of `entries`, in the same order: a row Postgres refuses
    /// is dead-lettered with it.
    pub payloads: Vec<Bytes>,
}

/// An entry to copy to the dead-letter stream, then ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub source_id: EntryId,
    pub payload: Option<Bytes>,
    pub reason: String,
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// Nothing wrong with the rows: Postgres away, timed out, deadlock, serialisation.
    Transient(String),
    /// Postgres rejected the data; `row` is the offending row's index when known.
    Rejected { reason: String, row: Option<usize> },
}

impl WriteFailure {
    /// A failed insert, from the SQLSTATE Postgres answered with (none when it did not
    /// answer) and its message. Data exceptions (class 22), integrity violations (23) and
    /// program limits (54) are about the rows: bisecting finds the culprit. Anything else
    /// (connection lost, timeout, deadlock, a missing table after a bad deploy) says
    /// nothing about the rows and is retried as it is, so that an operator's mistake never
    /// dead-letters good data.
    pub fn of_insert(sqlstate: Option<&str>, message: String) -> WriteFailure {
        match sqlstate {
            Some(code) if matches!(code.get(..2), Some("22" | "23" | "54")) => {
                WriteFailure::Rejected {
                    reason: format!("{message} ({code})"),
                    row: None,
                }
            }
            _ => WriteFailure::Transient(message),
        }
    }
}

/// One page of `XAUTOCLAIM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimResult {
    /// Where the next page starts; `0-0` when the sweep is complete.
    pub next_cursor: EntryId,
    /// Claimed entries, with delivery counts that include this claim.
    pub entries: Vec<StreamEntry>,
    /// Pending ids whose entries were deleted from the stream before they were stored.
    pub deleted: Vec<EntryId>,
}

/// A command for the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Read up to `count` entries; answer with `Input::Read`.
    Read { from: ReadFrom, count: usize },
    /// Claim up to `count` entries idle for `min_idle_ms`, from `cursor`; answer with
    /// `Input::Claimed`.
    Claim {
        cursor: EntryId,
        min_idle_ms: u64,
        count: usize,
    },
    /// Store these rows in one transaction, idempotently; answer with `Input::Written`.
    Write { id: WriteId, rows: Arc<[WriteRow]> },
    /// Add these entries to the dead-letter stream; answer with `Input::DeadLettered`.
    DeadLetter {
        id: DeadLetterId,
        entries: Vec<DeadLetter>,
    },
    /// Acknowledge these entries in the durable group. Fire and forget: an ack that is lost
    /// leaves the entry pending, to be stored again (a no-op) and acked later.
    Ack(Vec<EntryId>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_rows_reject_them() {
        for code in ["22003", "22P02", "23505", "54000"] {
            assert_eq!(
                WriteFailure::of_insert(Some(code), "bad".into()),
                WriteFailure::Rejected {
                    reason: format!("bad ({code})"),
                    row: None,
                }
            );
        }
        // Deadlock, missing table, lost connection, no answer at all: retried.
        for code in [Some("40P01"), Some("42P01"), Some("08006"), Some("2"), None] {
            assert_eq!(
                WriteFailure::of_insert(code, "away".into()),
                WriteFailure::Transient("away".into()),
                "{code:?}"
            );
        }
    }
}
