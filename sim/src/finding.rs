//! Findings: behaviour of the core that breaks no stored-data invariant but is worth a look.
//!
//! Violations (see [`crate::checker`]) fail a run; findings are counted and reported.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// The writer held more entries than `DurableConfig::max_held`.
    HeldOverBound,
    /// A writer that stopped cleanly left entries pending under its consumer name, not all
    /// of them refused rows.
    PendingAfterCleanExit,
    /// A writer that stopped cleanly left refused rows pending under its consumer name (they
    /// were released for redelivery; another instance claims them once idle).
    RefusedPendingAfterCleanExit,
    /// The dead letter of a row Postgres refused has no `payload` field, though the entry
    /// had one (the contract: "`payload` (the original, when there was one)").
    DeadLetterWithoutOriginal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// Simulated time, ms.
    pub at: u64,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at t={}: {}", self.kind, self.at, self.detail)
    }
}
