//! Milliseconds since the Unix epoch: the only notion of time the core knows.

use std::fmt;

/// A point in time as milliseconds since 1970-01-01T00:00:00Z.
///
/// Used both for GPS fix times and for the processing time the shell passes in; the core
/// never reads a clock, so every "now" is one of these handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The latest fix time accepted: 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can
    /// spell and well inside Postgres' `timestamptz` range.
    pub const MAX_FIX: UnixMillis = UnixMillis(253_402_300_799_999);

    pub const fn as_i64(self) -> i64 {
        self.0
    }

    /// `self + ms`, saturating instead of overflowing.
    pub const fn plus(self, ms: u64) -> UnixMillis {
        let ms = if ms > i64::MAX as u64 {
            i64::MAX
        } else {
            ms as i64
        };
        UnixMillis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`; negative when `earlier` is later.
    pub const fn since(self, earlier: UnixMillis) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_prints_as_milliseconds() {
        assert_eq!(UnixMillis(1_500).to_string(), "1500ms");
        assert_eq!(UnixMillis(-2).to_string(), "-2ms");
    }
}
