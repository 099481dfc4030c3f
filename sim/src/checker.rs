//! The invariant checker: an observer kept apart from the system under test.
//!
//! It learns what was appended (with the truth of each payload) and then watches what the
//! servers saw happen (deliveries, commits, dead letters, acks, deletions, crashes), judging
//! as it goes and once more at the end against the final state of the stream and the store.
//! It never looks inside a writer. Safety rules are checked at the moment of the event;
//! liveness rules only after the run has healed and gone quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;
use processor_core::durable::{DeadLetter, WriteRow};
use processor_core::faulty::FaultyThresholds;
use processor_core::stream::EntryId;
use processor_core::{Position, UnixMillis};

use crate::finding::{Finding, FindingKind};
use crate::store::{MemStore, PositionKey, StoredRow};
use crate::stream::{Delivery, MemStream};
use crate::traffic::{Expected, GeneratedEntry, Truth};

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// An entry was acked before a write storing it had committed and before it had been
    /// copied to the dead-letter stream.
    AckBeforeSettled,
    /// A committed row does not say what any of its entries said, or mixes keys.
    WrongRow,
    /// A key was inserted more than once.
    StoredTwice,
    /// The store reported a conflict on a key nobody had stored, or the stored row is not the
    /// first one committed under its key.
    NotFirstCommitted,
    /// A stored row's `faulty` flag disagrees with the contract's rules at its processing time.
    FaultyFlag,
    /// An undecodable entry or a row Postgres refuses was stored, or a stored key belongs to
    /// no appended entry.
    StoredBadEntry,
    /// A decodable, storable entry that still existed was dead-lettered.
    GoodEntryDeadLettered,
    /// A dead letter without a reason, for an unknown entry, or without the original payload
    /// of an undecodable entry.
    BadDeadLetter,
    /// A refused row was dead-lettered before it had been delivered `max_deliveries` times.
    RejectedTooEarly,
    /// After healing: a key that must be stored is not.
    Missing,
    /// After healing: an undecodable entry or a refused row was never dead-lettered.
    NotDeadLettered,
    /// After healing: the pending list is not empty, or entries were never delivered.
    PendingLeft,
    /// After healing: an entry a crashed instance left pending was neither stored nor
    /// dead-lettered.
    OrphanLost,
    /// The run did not go quiet after healing, or the instances did not stop.
    Liveness,
    /// After `Input::Timeout` at `now` a writer issued nothing, yet `poll_timeout` still asked to
    /// be woken at or before `now`: a shell trusting it spins.
    StaleDeadline,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// Simulated time, ms.
    pub at: u64,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at t={}: {}", self.kind, self.at, self.detail)
    }
}

/// Counts, for the run report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckerStats {
    pub appended: u64,
    pub decode_errors: u64,
    pub refused: u64,
    /// Entries whose key an earlier entry already had.
    pub duplicate_keys: u64,
    pub deleted: u64,
    pub committed_rows: u64,
    pub inserted_rows: u64,
    pub faulty_inserted: u64,
    pub dead_letters: u64,
    /// Dead letters of rows Postgres refused (at the delivery limit).
    pub refused_dead_lettered: u64,
    pub acked_ids: u64,
    /// Entries found pending under a crashed instance's name, and how many of them were
    /// stored or dead-lettered in the end.
    pub orphans: u64,
    pub orphans_settled: u64,
}

#[derive(Debug, Clone)]
struct EntryRecord {
    expected: Expected,
    payload: Option<Bytes>,
    deleted: bool,
    max_deliveries: u64,
    committed: bool,
    dead_letters: u32,
    orphan: bool,
}

/// Keep this many violations in full; count the rest.
const KEEP: usize = 25;

/// The checker.
#[derive(Debug, Clone)]
pub struct Checker {
    max_deliveries: u64,
    thresholds: FaultyThresholds,
    entries: BTreeMap<EntryId, EntryRecord>,
    keys_seen: BTreeSet<PositionKey>,
    first_commit: BTreeMap<PositionKey, StoredRow>,
    inserted: BTreeMap<PositionKey, u32>,
    violations: Vec<Violation>,
    more_violations: u64,
    findings: BTreeMap<FindingKind, (u64, Finding)>,
    stats: CheckerStats,
    now: u64,
}

/// The contract's stateless faulty rules, restated here independently of the core.
pub fn faulty_by_contract(
    position: &Position,
    received_at: UnixMillis,
    thresholds: &FaultyThresholds,
) -> bool {
    let null_island = position.latitude == 0.0 && position.longitude == 0.0;
    let few_satellites = position.satellites < thresholds.min_satellites;
    let ahead = position.ts.as_i64()
        > received_at
            .as_i64()
            .saturating_add(thresholds.max_future_ms as i64);
    null_island || few_satellites || ahead
}

fn key_of(position: &Position) -> PositionKey {
    (position.device_id.clone(), position.ts.as_i64())
}

impl Checker {
    pub fn new(max_deliveries: u64, thresholds: FaultyThresholds) -> Checker {
        Checker {
            max_deliveries,
            thresholds,
            entries: BTreeMap::new(),
            keys_seen: BTreeSet::new(),
            first_commit: BTreeMap::new(),
            inserted: BTreeMap::new(),
            violations: Vec::new(),
            more_violations: 0,
            findings: BTreeMap::new(),
            stats: CheckerStats::default(),
            now: 0,
        }
    }

    /// The simulated time of the events that follow.
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    fn violate(&mut self, kind: ViolationKind, detail: String) {
        if self.violations.len() < KEEP {
            self.violations.push(Violation {
                kind,
                at: self.now,
                detail,
            });
        } else {
            self.more_violations += 1;
        }
    }

    /// Records something worth reporting that is not a violation.
    pub fn find(&mut self, kind: FindingKind, detail: String) {
        let at = self.now;
        self.findings
            .entry(kind)
            .and_modify(|(n, _)| *n += 1)
            .or_insert_with(|| (1, Finding { kind, at, detail }));
    }

    pub fn on_append(&mut self, id: EntryId, entry: &GeneratedEntry) {
        self.stats.appended += 1;
        match &entry.expected {
            Expected::DecodeError(_) => self.stats.decode_errors += 1,
            Expected::Position(truth) => {
                if truth.rejected_by_store() {
                    self.stats.refused += 1;
                }
                if !self.keys_seen.insert(truth.key()) {
                    self.stats.duplicate_keys += 1;
                }
            }
        }
        self.entries.insert(
            id,
            EntryRecord {
                expected: entry.expected.clone(),
                payload: entry.payload.clone(),
                deleted: false,
                max_deliveries: 0,
                committed: false,
                dead_letters: 0,
                orphan: false,
            },
        );
    }

    /// `XDEL` of an entry.
    pub fn on_deleted(&mut self, id: EntryId) {
        if let Some(rec) = self.entries.get_mut(&id) {
            if !rec.deleted {
                rec.deleted = true;
                self.stats.deleted += 1;
            }
        }
    }

    /// Entries handed out by a read or a claim (whether or not the answer arrived).
    pub fn on_delivered(&mut self, deliveries: &[Delivery]) {
        for d in deliveries {
            if let Some(rec) = self.entries.get_mut(&d.id) {
                rec.max_deliveries = rec.max_deliveries.max(d.deliveries);
            }
        }
    }

    /// Entries pending under the name of an instance that crashed, or delivered to it after.
    pub fn on_orphaned(&mut self, ids: &[EntryId]) {
        for id in ids {
            if let Some(rec) = self.entries.get_mut(id) {
                rec.orphan = true;
            }
        }
    }

    /// A write statement committed; `inserted[i]` tells whether `rows[i]` was new.
    pub fn on_commit(&mut self, rows: &[WriteRow], inserted: &[bool]) {
        for (row, &new) in rows.iter().zip(inserted) {
            self.stats.committed_rows += 1;
            let key = key_of(&row.position);
            let mut said_so = false;
            let mut problems = Vec::new();
            for (id, _) in &row.entries {
                let Some(rec) = self.entries.get_mut(id) else {
                    let detail = format!("row {key:?} stores unknown entry {id}");
                    problems.push((ViolationKind::WrongRow, detail));
                    continue;
                };
                rec.committed = true;
                match &rec.expected {
                    Expected::DecodeError(kind) => {
                        let detail = format!("undecodable entry {id} ({kind}) stored as {key:?}");
                        problems.push((ViolationKind::StoredBadEntry, detail));
                    }
                    Expected::Position(truth) => {
                        if truth.key() != key {
                            let detail = format!(
                                "entry {id} with key {:?} stored under {key:?}",
                                truth.key()
                            );
                            problems.push((ViolationKind::WrongRow, detail));
                        }
                        if truth.rejected_by_store() {
                            let detail = format!("refused row of entry {id} committed");
                            problems.push((ViolationKind::StoredBadEntry, detail));
                        }
                        said_so |= truth.matches(&row.position);
                    }
                }
            }
            for (kind, detail) in problems {
                self.violate(kind, detail);
            }
            if !said_so {
                let detail = format!(
                    "row {key:?} of entries {:?} matches none of them",
                    row.entries
                );
                self.violate(ViolationKind::WrongRow, detail);
            }
            let faulty = faulty_by_contract(&row.position, row.received_at, &self.thresholds);
            if faulty != row.faulty {
                let detail = format!(
                    "row {key:?} received at {} has faulty={} but the rules say {faulty}",
                    row.received_at.as_i64(),
                    row.faulty
                );
                self.violate(ViolationKind::FaultyFlag, detail);
            }
            if new {
                self.stats.inserted_rows += 1;
                if row.faulty {
                    self.stats.faulty_inserted += 1;
                }
                let n = self.inserted.entry(key.clone()).or_insert(0);
                *n += 1;
                if *n > 1 {
                    let detail = format!("{key:?} inserted {n} times");
                    self.violate(ViolationKind::StoredTwice, detail);
                }
                self.first_commit.entry(key).or_insert_with(|| StoredRow {
                    position: row.position.clone(),
                    faulty: row.faulty,
                    received_at: row.received_at,
                });
            } else if !self.first_commit.contains_key(&key) {
                let detail = format!("{key:?} reported as already stored, but never inserted");
                self.violate(ViolationKind::NotFirstCommitted, detail);
            }
        }
    }

    /// Entries appended to the dead-letter stream.
    pub fn on_dead_lettered(&mut self, letters: &[DeadLetter]) {
        for dl in letters {
            self.stats.dead_letters += 1;
            let id = dl.source_id;
            if dl.reason.trim().is_empty() {
                self.violate(
                    ViolationKind::BadDeadLetter,
                    format!("dead letter of {id} has no reason"),
                );
            }
            let Some(rec) = self.entries.get_mut(&id) else {
                self.violate(
                    ViolationKind::BadDeadLetter,
                    format!("dead letter for unknown entry {id}"),
                );
                continue;
            };
            rec.dead_letters += 1;
            let (expected, deleted, max_deliveries) =
                (rec.expected.clone(), rec.deleted, rec.max_deliveries);
            let original = rec.payload.clone();
            match expected {
                Expected::DecodeError(kind) => match &dl.payload {
                    Some(p) if Some(p) != original.as_ref() => self.violate(
                        ViolationKind::BadDeadLetter,
                        format!("dead letter of {id} ({kind}) carries another payload"),
                    ),
                    None if original.is_some() && !deleted => self.violate(
                        ViolationKind::BadDeadLetter,
                        format!("dead letter of {id} ({kind}) lacks the original payload"),
                    ),
                    _ => {}
                },
                Expected::Position(truth) if truth.rejected_by_store() => {
                    self.stats.refused_dead_lettered += 1;
                    if !deleted && max_deliveries < self.max_deliveries {
                        let detail = format!(
                            "refused row {id} dead-lettered after {max_deliveries} of {} deliveries ({})",
                            self.max_deliveries, dl.reason
                        );
                        self.violate(ViolationKind::RejectedTooEarly, detail);
                    }
                    if dl.payload.is_none() && original.is_some() && !deleted {
                        self.find(
                            FindingKind::DeadLetterWithoutOriginal,
                            format!(
                                "dead letter of refused row {id} has no `payload` field ({})",
                                dl.reason
                            ),
                        );
                    }
                }
                Expected::Position(_) => {
                    if !deleted {
                        let detail = format!(
                            "storable entry {id} dead-lettered: {} ({max_deliveries} deliveries)",
                            dl.reason
                        );
                        self.violate(ViolationKind::GoodEntryDeadLettered, detail);
                    }
                }
            }
        }
    }

    /// `XACK` of `ids` is about to run.
    pub fn on_ack(&mut self, ids: &[EntryId]) {
        for id in ids {
            self.stats.acked_ids += 1;
            match self.entries.get(id) {
                Some(rec) if rec.committed || rec.dead_letters > 0 => {}
                Some(rec) => {
                    let what = match &rec.expected {
                        Expected::DecodeError(kind) => format!("undecodable ({kind})"),
                        Expected::Position(t) => format!("{:?}", t.key()),
                    };
                    let detail = format!(
                        "{id} {what} acked before any write storing it committed and before any dead letter"
                    );
                    self.violate(ViolationKind::AckBeforeSettled, detail);
                }
                None => self.violate(
                    ViolationKind::AckBeforeSettled,
                    format!("ack of unknown entry {id}"),
                ),
            }
        }
    }

    /// A rule broken that only the driver can see (liveness, timers).
    pub fn on_driver_violation(&mut self, kind: ViolationKind, detail: String) {
        self.violate(kind, detail);
    }

    /// True for an entry whose row Postgres refuses.
    pub fn is_refused(&self, id: EntryId) -> bool {
        self.entries.get(&id).is_some_and(
            |rec| matches!(&rec.expected, Expected::Position(t) if t.rejected_by_store()),
        )
    }

    /// What an entry is, for messages: `undecodable`, `refused`, `storable`, plus `deleted`.
    pub fn describe(&self, id: EntryId) -> String {
        match self.entries.get(&id) {
            None => format!("{id} (unknown)"),
            Some(rec) => {
                let what = match &rec.expected {
                    Expected::DecodeError(_) => "undecodable",
                    Expected::Position(t) if t.rejected_by_store() => "refused",
                    Expected::Position(_) => "storable",
                };
                let deleted = if rec.deleted { ", deleted" } else { "" };
                let settled = if rec.committed {
                    ", committed"
                } else if rec.dead_letters > 0 {
                    ", dead-lettered"
                } else {
                    ", not yet stored"
                };
                format!(
                    "{id} ({what}{deleted}{settled}, {} deliveries)",
                    rec.max_deliveries
                )
            }
        }
    }

    pub fn stats(&self) -> &CheckerStats {
        &self.stats
    }

    /// The violations so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Findings so far: per kind, how many and the first.
    pub fn findings(&self) -> &BTreeMap<FindingKind, (u64, Finding)> {
        &self.findings
    }

    /// Violations beyond those kept in full.
    pub fn more_violations(&self) -> u64 {
        self.more_violations
    }

    /// The end-of-run checks, once the run has healed and gone quiet.
    pub fn finish(&mut self, stream: &MemStream, store: &MemStore) {
        self.check_pending(stream);
        self.check_keys(store);
        self.check_settled();
    }

    fn check_pending(&mut self, stream: &MemStream) {
        if !stream.pending().is_empty() {
            let sample: Vec<String> = stream
                .pending()
                .iter()
                .take(5)
                .map(|(id, p)| format!("{id}@{}x{}", p.consumer, p.deliveries))
                .collect();
            let detail = format!(
                "{} entries still pending, e.g. {}",
                stream.pending().len(),
                sample.join(", ")
            );
            self.violate(ViolationKind::PendingLeft, detail);
        }
        if stream.undelivered() > 0 {
            let detail = format!("{} entries never delivered", stream.undelivered());
            self.violate(ViolationKind::PendingLeft, detail);
        }
    }

    fn check_keys(&mut self, store: &MemStore) {
        let mut by_key: BTreeMap<PositionKey, Vec<(EntryId, Truth, bool)>> = BTreeMap::new();
        for (id, rec) in &self.entries {
            if let Expected::Position(truth) = &rec.expected {
                if !truth.rejected_by_store() {
                    by_key
                        .entry(truth.key())
                        .or_default()
                        .push((*id, truth.clone(), rec.deleted));
                }
            }
        }
        for (key, list) in &by_key {
            let required = list.iter().any(|(_, _, deleted)| !deleted);
            let Some(row) = store.rows().get(key) else {
                if required {
                    let ids: Vec<String> = list.iter().map(|(id, _, _)| id.to_string()).collect();
                    let detail = format!("{key:?} (entries {}) not stored", ids.join(", "));
                    self.violate(ViolationKind::Missing, detail);
                }
                continue;
            };
            if !list
                .iter()
                .any(|(_, truth, _)| truth.matches(&row.position))
            {
                let detail = format!("stored {key:?} matches none of its entries");
                self.violate(ViolationKind::WrongRow, detail);
            }
            if self.first_commit.get(key) != Some(row) {
                let detail = format!("stored {key:?} is not the first row committed under it");
                self.violate(ViolationKind::NotFirstCommitted, detail);
            }
            let n = self.inserted.get(key).copied().unwrap_or(0);
            if n != 1 {
                let detail = format!("{key:?} inserted {n} times");
                self.violate(ViolationKind::StoredTwice, detail);
            }
        }
        let strays: Vec<PositionKey> = store
            .rows()
            .keys()
            .filter(|k| !by_key.contains_key(*k))
            .cloned()
            .collect();
        for key in strays {
            let detail = format!("stored {key:?} belongs to no storable entry");
            self.violate(ViolationKind::StoredBadEntry, detail);
        }
    }

    fn check_settled(&mut self) {
        let mut problems = Vec::new();
        let (mut orphans, mut settled) = (0, 0);
        for (id, rec) in &self.entries {
            let refused = matches!(&rec.expected, Expected::Position(t) if t.rejected_by_store());
            let undecodable = matches!(rec.expected, Expected::DecodeError(_));
            if (refused || undecodable) && !rec.deleted && rec.dead_letters == 0 {
                let what = match &rec.expected {
                    Expected::DecodeError(kind) => format!("undecodable entry {id} ({kind})"),
                    Expected::Position(_) => format!("refused row {id}"),
                };
                problems.push((
                    ViolationKind::NotDeadLettered,
                    format!("{what} never dead-lettered"),
                ));
            }
            if rec.orphan {
                orphans += 1;
                if rec.committed || rec.dead_letters > 0 {
                    settled += 1;
                } else if !rec.deleted {
                    problems.push((
                        ViolationKind::OrphanLost,
                        format!("{id}, left pending by a crashed instance, never stored nor dead-lettered"),
                    ));
                }
            }
        }
        self.stats.orphans = orphans;
        self.stats.orphans_settled = settled;
        for (kind, detail) in problems {
            self.violate(kind, detail);
        }
    }
}
