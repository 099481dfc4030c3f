//! An in-memory stand-in for the `positions` table, and for what snapshots read from it: the
//! newest non-faulty stored row of each device (in Postgres, a backward probe of the key).
//!
//! One [`MemStore::insert`] is one `INSERT ... ON CONFLICT (device_id, ts) DO NOTHING`
//! statement in its own transaction: all rows or none. The first row stored under a key wins. Like Postgres with a text column, the store rejects a device id holding
//! a NUL character, and, like Postgres, it rejects the whole statement without saying which
//! row was at fault (the index is returned for the simulation to reveal or not).

use std::collections::BTreeMap;

use processor_core::durable::WriteRow;
use processor_core::{Position, UnixMillis};

/// A device id holding this character is rejected by the stand-in, as Postgres rejects a
/// row that breaks a constraint. (NUL, which Postgres refuses in text, no longer gets past
/// the decoder: contract section 3.)
pub const REJECT_MARKER: char = '\u{a4}';

/// The stand-in's message for it.
pub const REJECT_REASON: &str =
    "new row for relation \"positions\" violates check constraint \"sim_reject\" (23514)";

/// The key of the positions table.
pub type PositionKey = (String, i64);

/// A stored row of `positions`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub position: Position,
    pub faulty: bool,
    pub received_at: UnixMillis,
}

/// The newest non-faulty stored row of a device, as a snapshot reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestRow {
    pub ts: UnixMillis,
    pub latitude: f64,
    pub longitude: f64,
    pub speed: f64,
    pub angle: f64,
}

impl LatestRow {
    pub fn of(position: &Position) -> LatestRow {
        LatestRow {
            ts: position.ts,
            latitude: position.latitude,
            longitude: position.longitude,
            speed: position.speed,
            angle: position.angle,
        }
    }
}

/// Why a statement did not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database is down (told so with [`MemStore::set_down`]).
    Unavailable,
    /// A row's data was refused; nothing was stored. `row` is the first offending row.
    Rejected { reason: String, row: usize },
}

/// The table.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    rows: BTreeMap<PositionKey, StoredRow>,
    down: bool,
    commits: u64,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// While down, every statement fails transiently and nothing is stored.
    pub fn set_down(&mut self, down: bool) {
        self.down = down;
    }

    pub fn is_down(&self) -> bool {
        self.down
    }

    /// Runs one insert statement; on commit, says for each row whether it was newly inserted.
    pub fn insert(&mut self, rows: &[WriteRow]) -> Result<Vec<bool>, StoreError> {
        if self.down {
            return Err(StoreError::Unavailable);
        }
        if let Some(row) = rows
            .iter()
            .position(|r| r.position.device_id.contains(REJECT_MARKER))
        {
            return Err(StoreError::Rejected {
                reason: REJECT_REASON.to_owned(),
                row,
            });
        }
        self.commits += 1;
        let mut inserted = Vec::with_capacity(rows.len());
        for row in rows {
            let key = (row.position.device_id.clone(), row.position.ts.as_i64());
            if self.rows.contains_key(&key) {
                inserted.push(false);
                continue;
            }
            self.rows.insert(
                key,
                StoredRow {
                    position: row.position.clone(),
                    faulty: row.faulty,
                    received_at: row.received_at,
                },
            );
            inserted.push(true);
        }
        Ok(inserted)
    }

    pub fn rows(&self) -> &BTreeMap<PositionKey, StoredRow> {
        &self.rows
    }

    /// The newest non-faulty stored row of `device`, read as Postgres reads it: backward
    /// along the key from the device's newest row.
    pub fn newest_non_faulty(&self, device: &str) -> Option<LatestRow> {
        self.rows
            .range((device.to_owned(), i64::MIN)..=(device.to_owned(), i64::MAX))
            .rev()
            .find(|(_, row)| !row.faulty)
            .map(|(_, row)| LatestRow::of(&row.position))
    }

    /// Statements committed so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(device: &str, ts: i64, speed: f64, faulty: bool) -> WriteRow {
        WriteRow {
            position: Position {
                device_id: device.to_owned(),
                ts: UnixMillis(ts),
                latitude: 1.0,
                longitude: 2.0,
                altitude: 0.0,
                angle: 0.0,
                speed,
                satellites: 9,
                priority: 0,
                event_io_id: None,
                attributes: BTreeMap::new(),
            },
            faulty,
            received_at: UnixMillis(0),
            entries: Vec::new(),
            payloads: Vec::new(),
        }
    }

    #[test]
    fn first_stored_wins_and_the_newest_non_faulty_row_is_read() {
        let mut s = MemStore::new();
        assert_eq!(
            s.insert(&[row("a", 10, 1.0, false), row("a", 5, 1.0, false)]),
            Ok(vec![true, true])
        );
        assert_eq!(s.insert(&[row("a", 10, 2.0, false)]), Ok(vec![false]));
        assert_eq!(s.rows()[&("a".to_owned(), 10)].position.speed, 1.0);
        assert_eq!(s.newest_non_faulty("a").map(|r| r.ts), Some(UnixMillis(10)));
        s.insert(&[row("a", 20, 3.0, true)]).unwrap();
        assert_eq!(s.newest_non_faulty("a").map(|r| r.ts), Some(UnixMillis(10)));
        assert_eq!(s.newest_non_faulty("b"), None);
    }

    #[test]
    fn rejects_the_whole_statement_and_fails_while_down() {
        let mut s = MemStore::new();
        let bad = format!("x{REJECT_MARKER}");
        let got = s.insert(&[row("a", 1, 0.0, false), row(&bad, 1, 0.0, false)]);
        assert!(matches!(got, Err(StoreError::Rejected { row: 1, .. })));
        assert!(s.rows().is_empty());
        s.set_down(true);
        assert_eq!(
            s.insert(&[row("a", 1, 0.0, false)]),
            Err(StoreError::Unavailable)
        );
        assert_eq!(s.commits(), 0);
    }
}
