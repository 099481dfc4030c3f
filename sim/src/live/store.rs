//! The model of what Postgres holds for the live path, and the answers the shell's reads
//! give from it.
//!
//! Every non-faulty fix the durable path stored so far, keyed (device, ts) with the first
//! stored kept, as the positions table's key does. Faulty rows are left out altogether:
//! every read the live path makes filters them (`NOT faulty`). The reads follow the shell's
//! statements (`shell/src/postgres/history.rs`, `replay.rs`), not the core: what the core
//! makes of the rows is what the simulation judges.

use std::collections::BTreeMap;

use processor_core::live::{HistoryQuery, ReplayKey};
use processor_core::wire::server::WirePosition;
use processor_core::UnixMillis;

#[derive(Debug, Default)]
pub struct ModelStore {
    rows: BTreeMap<String, BTreeMap<i64, WirePosition>>,
}

impl ModelStore {
    /// Stores a row unless its (device, ts) is already stored; true when it was new.
    pub fn insert(&mut self, row: &WirePosition) -> bool {
        let device = self.rows.entry(row.device_id.clone()).or_default();
        if device.contains_key(&row.ts) {
            return false;
        }
        device.insert(row.ts, row.clone());
        true
    }

    /// Whether `device` has a row at `ts`.
    pub fn has(&self, device: &str, ts: i64) -> bool {
        self.rows.get(device).is_some_and(|r| r.contains_key(&ts))
    }

    fn newest(&self, device: &str) -> Option<&WirePosition> {
        self.rows.get(device)?.values().next_back()
    }

    /// The `ts` of the newest row of `device`.
    pub fn newest_ts(&self, device: &str) -> Option<i64> {
        self.newest(device).map(|r| r.ts)
    }

    /// The answer to a snapshot load: the newest row of each device that has one, then
    /// what `history` reads (a device's newest row may come twice, as from Postgres).
    pub fn snapshot(&self, devices: &[String], history: HistoryQuery) -> Vec<WirePosition> {
        let mut out: Vec<WirePosition> = devices
            .iter()
            .filter_map(|d| self.newest(d).cloned())
            .collect();
        match history {
            HistoryQuery::Latest => {}
            HistoryQuery::Trail {
                window_ms,
                max_rows_per_device,
            } => {
                for device in devices {
                    out.extend(self.trail_sample(device, window_ms, max_rows_per_device));
                }
            }
            HistoryQuery::Since { since, max_rows } => {
                // Device by device along the key, stopping once more than `max_rows` were
                // read: the core learns from the one row too many that the resume is.
                let mut read = 0usize;
                'devices: for device in devices {
                    let Some(rows) = self.rows.get(device) else {
                        continue;
                    };
                    let after = since.as_i64().saturating_add(1);
                    for row in rows.range(after..).map(|(_, r)| r) {
                        out.push(row.clone());
                        read += 1;
                        if read > max_rows {
                            break 'devices;
                        }
                    }
                }
            }
        }
        out
    }

    /// The rows of `device` in the `window_ms` before its newest one (that one left out):
    /// all of them when there are at most `max`, else those at index `floor(k * n / max)`
    /// for k in 0..max, which is what the shell's trail statement selects.
    fn trail_sample(&self, device: &str, window_ms: u64, max: usize) -> Vec<WirePosition> {
        let Some(head) = self.newest(device) else {
            return Vec::new();
        };
        let start = head
            .ts
            .saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let window: Vec<&WirePosition> = self
            .rows
            .get(device)
            .map(|r| r.range(start..head.ts).map(|(_, p)| p).collect())
            .unwrap_or_default();
        let n = window.len();
        let max = max.max(1);
        if n <= max {
            return window.into_iter().cloned().collect();
        }
        (0..max)
            .map(|k| window[k * n / max].clone())
            .collect::<Vec<_>>()
    }

    /// The answer to a replay's snapshot load: each device's newest row at or before `at`.
    pub fn replay_snapshot(&self, devices: &[String], at: UnixMillis) -> Vec<WirePosition> {
        devices
            .iter()
            .filter_map(|d| {
                let rows = self.rows.get(d)?;
                rows.range(..=at.as_i64())
                    .next_back()
                    .map(|(_, r)| r.clone())
            })
            .collect()
    }

    /// The answer to a replay's page load: at most `limit` rows of `devices` after the key
    /// `after` with `ts <= to`, in key order (ts, device).
    pub fn replay_page(
        &self,
        devices: &[String],
        after: &ReplayKey,
        to: UnixMillis,
        limit: usize,
    ) -> Vec<WirePosition> {
        let mut rows = self.keys(devices, after.ts.as_i64(), to.as_i64());
        rows.retain(|(ts, device)| {
            (*ts, device.as_str()) > (after.ts.as_i64(), after.device.as_str())
        });
        rows.truncate(limit);
        rows.iter()
            .filter_map(|(ts, device)| self.rows.get(device)?.get(ts).cloned())
            .collect()
    }

    /// The replay keys (ts, device) of the rows of `devices` with `from <= ts <= to`, in
    /// key order.
    pub fn keys(&self, devices: &[String], from: i64, to: i64) -> Vec<(i64, String)> {
        if from > to {
            return Vec::new();
        }
        let mut keys: Vec<(i64, String)> = devices
            .iter()
            .filter_map(|d| Some((d, self.rows.get(d)?)))
            .flat_map(|(d, rows)| rows.range(from..=to).map(move |(ts, _)| (*ts, d.clone())))
            .collect();
        keys.sort();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device: &str, ts: i64) -> WirePosition {
        WirePosition {
            device_id: device.to_owned(),
            lat: 54.0,
            lon: 25.0,
            ts,
            speed: 0.0,
            course: 0.0,
        }
    }

    fn store(rows: &[(&str, i64)]) -> ModelStore {
        let mut store = ModelStore::default();
        for (d, ts) in rows {
            store.insert(&row(d, *ts));
        }
        store
    }

    fn ts(rows: &[WirePosition]) -> Vec<(String, i64)> {
        rows.iter().map(|r| (r.device_id.clone(), r.ts)).collect()
    }

    #[test]
    fn since_reads_after_since_device_by_device_and_stops_one_past_the_maximum() {
        let s = store(&[("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 5)]);
        let devices = vec!["a".to_owned(), "b".to_owned()];
        let query = |max_rows| HistoryQuery::Since {
            since: UnixMillis(1),
            max_rows,
        };
        let all = s.snapshot(&devices, query(10));
        assert_eq!(
            ts(&all),
            vec![
                ("a".into(), 3),
                ("b".into(), 5),
                ("a".into(), 2),
                ("a".into(), 3),
                ("b".into(), 5)
            ]
        );
        let cut = s.snapshot(&devices, query(1));
        assert_eq!(
            cut.len(),
            2 + 2,
            "the newest two, then two rows: one past the maximum"
        );
    }

    #[test]
    fn a_trail_sample_is_the_window_before_the_newest_thinned_like_the_statement() {
        let s = store(&[
            ("a", 0),
            ("a", 10),
            ("a", 20),
            ("a", 30),
            ("a", 40),
            ("a", 50),
        ]);
        let query = HistoryQuery::Trail {
            window_ms: 45,
            max_rows_per_device: 2,
        };
        // Window [5, 50): 10, 20, 30, 40; n = 4, max = 2: indexes 0 and 2.
        assert_eq!(
            ts(&s.snapshot(&["a".to_owned()], query)),
            vec![("a".into(), 50), ("a".into(), 10), ("a".into(), 30)]
        );
    }

    #[test]
    fn replay_reads_follow_the_key() {
        let s = store(&[("a", 1), ("b", 1), ("a", 2), ("b", 3)]);
        let devices = vec!["a".to_owned(), "b".to_owned()];
        let after = ReplayKey {
            ts: UnixMillis(1),
            device: "a".to_owned(),
        };
        assert_eq!(
            ts(&s.replay_page(&devices, &after, UnixMillis(3), 2)),
            vec![("b".into(), 1), ("a".into(), 2)]
        );
        assert_eq!(
            ts(&s.replay_snapshot(&devices, UnixMillis(2))),
            vec![("a".into(), 2), ("b".into(), 1)]
        );
    }
}
