//! Stream entries as the core sees them.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use thiserror::Error;

/// A Redis stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub const fn new(ms: u64, seq: u64) -> EntryId {
        EntryId { ms, seq }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An entry id that is not `<u64>-<u64>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("stream entry id is not of the form <ms>-<seq>")]
pub struct BadEntryId;

impl FromStr for EntryId {
    type Err = BadEntryId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(BadEntryId)?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| BadEntryId)?,
            seq: seq.parse().map_err(|_| BadEntryId)?,
        })
    }
}

/// One entry read from the telemetry stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: EntryId,
    /// The `payload` field, when the entry has one.
    pub payload: Option<Bytes>,
    /// How many times the consumer group has delivered this entry, this delivery included.
    pub deliveries: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_from_what_redis_writes() {
        assert_eq!("0-0".parse(), Ok(EntryId::new(0, 0)));
        assert_eq!(
            "1764324000000-7".parse(),
            Ok(EntryId::new(1_764_324_000_000, 7))
        );
        let max = format!("{}-{}", u64::MAX, u64::MAX);
        assert_eq!(max.parse(), Ok(EntryId::new(u64::MAX, u64::MAX)));
        // Display and parse agree, so an id written back to Redis is the one read.
        let id = EntryId::new(12, 34);
        assert_eq!(id.to_string(), "12-34");
        assert_eq!(id.to_string().parse(), Ok(id));
    }

    #[test]
    fn anything_but_two_u64_around_one_dash_is_refused() {
        let too_big = format!("{}0-0", u64::MAX);
        for bad in [
            "",
            "-",
            "12",
            "12-",
            "-34",
            "a-34",
            "12-b",
            "12-34-56",
            "12--34",
            "-12-34",
            " 12-34",
            "12-34 ",
            "12_34",
            "1.5-2",
            too_big.as_str(),
        ] {
            assert_eq!(bad.parse::<EntryId>(), Err(BadEntryId), "{bad:?}");
        }
    }
}
