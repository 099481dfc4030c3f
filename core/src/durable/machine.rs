//! [`DurableWriter`]: the durable-write decisions, fed inputs and polled for commands.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::command::{
    ClaimResult, Command, DeadLetter, DeadLetterId, ReadFrom, WriteFailure, WriteId, WriteRow,
};
use super::config::DurableConfig;
use super::input::Input;
use crate::backoff::backoff_ms;
use crate::decode::decode_position;
use crate::faulty::is_faulty;
use crate::stream::{EntryId, StreamEntry};
use crate::{MonoMillis, Now, UnixMillis};

/// Reason recorded for an entry that vanished from the stream while it was pending.
pub const DELETED_REASON: &str = "entry was deleted from the stream before it was stored";

/// Cumulative counts, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurableStats {
    /// Entries taken in (reads and claims; an entry already held is not counted again).
    pub records: u64,
    pub decode_errors: u64,
    /// Rows newly inserted by committed writes, as the shell reported them.
    pub rows_written: u64,
    pub dead_lettered: u64,
    /// Single rows Postgres rejected for their data.
    pub rejected_rows: u64,
    /// Writes retried after a transient failure.
    pub write_retries: u64,
}

#[derive(Debug)]
enum WriteState {
    Queued,
    InFlight,
    RetryAt(MonoMillis),
}

#[derive(Debug)]
struct PendingWrite {
    rows: Arc<[WriteRow]>,
    attempts: u32,
    state: WriteState,
}

#[derive(Debug)]
struct PendingDeadLetter {
    entries: Vec<DeadLetter>,
    attempts: u32,
    /// `None` while in flight.
    retry_at: Option<MonoMillis>,
}

/// The durable-write state machine. After every [`handle`], drain [`poll_command`] until it
/// returns `None`, then wait at most until [`poll_timeout`] before handing it
/// [`Input::Timeout`].
///
/// [`handle`]: DurableWriter::handle
/// [`poll_command`]: DurableWriter::poll_command
/// [`poll_timeout`]: DurableWriter::poll_timeout
#[derive(Debug)]
pub struct DurableWriter {
    config: DurableConfig,
    /// Deadlines are monotonic: a wall clock that steps fires no retry early or late.
    now: MonoMillis,
    /// The wall clock of the latest input, for the faulty rules and `received_at`.
    wall: UnixMillis,
    out: VecDeque<Command>,

    next_read: ReadFrom,
    read_in_flight: Option<ReadFrom>,
    /// Entries asked for by the read and the claim in flight: room already promised.
    read_reserved: usize,
    claim_reserved: usize,
    read_retry_at: Option<MonoMillis>,
    read_failures: u32,
    /// Set when the stream connection was lost while a read was in flight: what that read
    /// returns does not tell whether the pending list was drained.
    redrain: bool,

    claim_cursor: Option<EntryId>,
    claim_in_flight: bool,
    next_claim_at: MonoMillis,

    /// Entries read or claimed and neither acked nor released yet.
    held: BTreeSet<EntryId>,

    next_write_id: u64,
    writes: BTreeMap<WriteId, PendingWrite>,
    queue: VecDeque<WriteId>,
    writes_in_flight: usize,
    /// Rows read and not in a write yet, with each key's place: they go out as one write
    /// when a slot is free or a batch is full.
    open: Vec<WriteRow>,
    open_keys: BTreeMap<(String, i64), usize>,

    next_dead_letter_id: u64,
    dead_letters: BTreeMap<DeadLetterId, PendingDeadLetter>,

    stopping: bool,
    stats: DurableStats,
}

impl DurableWriter {
    /// A writer that starts by draining this consumer's own pending entries.
    pub fn new(config: DurableConfig, now: Now) -> DurableWriter {
        let mut writer = DurableWriter {
            config,
            now: now.mono,
            wall: now.wall,
            out: VecDeque::new(),
            next_read: ReadFrom::Pending {
                after: EntryId::default(),
            },
            read_in_flight: None,
            read_reserved: 0,
            claim_reserved: 0,
            read_retry_at: None,
            read_failures: 0,
            redrain: false,
            claim_cursor: None,
            claim_in_flight: false,
            next_claim_at: now.mono,
            held: BTreeSet::new(),
            next_write_id: 0,
            writes: BTreeMap::new(),
            queue: VecDeque::new(),
            open: Vec::new(),
            open_keys: BTreeMap::new(),
            writes_in_flight: 0,
            next_dead_letter_id: 0,
            dead_letters: BTreeMap::new(),
            stopping: false,
            stats: DurableStats::default(),
        };
        writer.pump();
        writer
    }

    /// Takes one input at `now`; what follows from it is polled with
    /// [`poll_command`](DurableWriter::poll_command).
    pub fn handle(&mut self, now: Now, input: Input) {
        self.advance(now);
        let now = self.now;
        match input {
            Input::Timeout => {}
            Input::Shutdown => self.stopping = true,
            Input::Read(Ok(entries)) => self.read(entries),
            Input::Read(Err(_)) => self.read_failed(now),
            Input::Claimed(Ok(result)) => self.claimed(now, result),
            Input::Claimed(Err(_)) => self.claim_failed(now),
            Input::Written(id, outcome) => self.written(now, id, outcome),
            Input::DeadLettered(id, outcome) => self.dead_lettered(now, id, outcome.is_ok()),
            Input::Acked(Ok(())) => {}
            // The pending list may hold entries this writer no longer tracks.
            Input::Acked(Err(_)) => self.stream_lost(),
        }
        self.pump();
    }

    /// The next command, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<MonoMillis> {
        let mut next: Option<MonoMillis> = None;
        let mut consider = |t: MonoMillis| next = Some(next.map_or(t, |n| n.min(t)));
        // With no room to take entries in, a due read or claim cannot go out; reporting its
        // (past) time would have the shell send `Input::Timeout` in a busy loop. The ack or
        // release that makes room pumps them out.
        if self.room() > 0 {
            // A retry time is set only by a failed read, which leaves no read in flight and
            // the pending list to drain (allowed while stopping too); the next read clears
            // it. So a retry time always means a read may go out then.
            if let Some(t) = self.read_retry_at {
                consider(t);
            }
            if !self.stopping && !self.claim_in_flight && self.claim_cursor.is_none() {
                consider(self.next_claim_at);
            }
        }
        for w in self.writes.values() {
            if let WriteState::RetryAt(t) = w.state {
                consider(t);
            }
        }
        for d in self.dead_letters.values() {
            if let Some(t) = d.retry_at {
                consider(t);
            }
        }
        next
    }

    pub fn stats(&self) -> DurableStats {
        self.stats
    }

    /// Entries read or claimed that are neither acked nor released.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// True once shutdown was asked for and everything taken in has been settled.
    pub fn is_stopped(&self) -> bool {
        self.stopping
            && !self.may_read()
            && self.read_in_flight.is_none()
            && !self.claim_in_flight
            && self.held.is_empty()
            && self.dead_letters.is_empty()
    }

    fn read(&mut self, entries: Vec<StreamEntry>) {
        let from = self.read_in_flight.take();
        self.read_reserved = 0;
        self.read_failures = 0;
        self.read_retry_at = None;
        if let Some(ReadFrom::Pending { .. }) = from {
            self.next_read = match entries.last() {
                Some(last) => ReadFrom::Pending { after: last.id },
                None => ReadFrom::New,
            };
        }
        if std::mem::take(&mut self.redrain) {
            self.next_read = ReadFrom::Pending {
                after: EntryId::default(),
            };
        }
        self.ingest(entries, Vec::new());
    }

    fn read_failed(&mut self, now: MonoMillis) {
        self.read_in_flight = None;
        self.read_reserved = 0;
        self.read_failures = self.read_failures.saturating_add(1);
        self.read_retry_at = Some(now.plus(self.backoff(self.read_failures)));
        // The failed read may have been delivered without reaching us: drain the pending
        // list again before asking for new entries.
        self.next_read = ReadFrom::Pending {
            after: EntryId::default(),
        };
        self.redrain = false;
    }

    /// The stream connection was lost outside a read (an ack failed): the pending list may
    /// hold entries this writer no longer tracks, so it is drained again.
    fn stream_lost(&mut self) {
        if self.read_in_flight.is_some() {
            self.redrain = true;
        } else {
            self.next_read = ReadFrom::Pending {
                after: EntryId::default(),
            };
        }
    }

    fn claimed(&mut self, now: MonoMillis, result: ClaimResult) {
        self.claim_in_flight = false;
        self.claim_reserved = 0;
        if result.next_cursor == EntryId::default() {
            self.claim_cursor = None;
            self.next_claim_at = now.plus(self.config.claim_interval_ms);
        } else {
            self.claim_cursor = Some(result.next_cursor);
        }
        self.ingest(result.entries, result.deleted);
    }

    /// The sweep starts over at the next interval.
    fn claim_failed(&mut self, now: MonoMillis) {
        self.claim_in_flight = false;
        self.claim_reserved = 0;
        self.claim_cursor = None;
        self.next_claim_at = now.plus(self.config.claim_interval_ms);
    }

    fn written(&mut self, now: MonoMillis, id: WriteId, outcome: Result<u64, WriteFailure>) {
        let Some(write) = self.writes.get_mut(&id) else {
            return;
        };
        if !matches!(write.state, WriteState::InFlight) {
            return;
        }
        self.writes_in_flight -= 1;
        match outcome {
            Ok(inserted) => {
                self.stats.rows_written += inserted;
                if let Some(write) = self.writes.remove(&id) {
                    let ids: Vec<EntryId> = write
                        .rows
                        .iter()
                        .flat_map(|row| row.entries.iter().map(|(id, _)| *id))
                        .collect();
                    self.ack(ids);
                }
            }
            Err(WriteFailure::Transient(_)) => {
                write.attempts = write.attempts.saturating_add(1);
                let delay = backoff_ms(
                    write.attempts,
                    self.config.retry_min_ms,
                    self.config.retry_max_ms,
                );
                write.state = WriteState::RetryAt(now.plus(delay));
                self.stats.write_retries += 1;
            }
            Err(WriteFailure::Rejected { reason, row }) => {
                if let Some(write) = self.writes.remove(&id) {
                    self.split_rejected(&write.rows, &reason, row);
                }
            }
        }
    }

    fn dead_lettered(&mut self, now: MonoMillis, id: DeadLetterId, copied: bool) {
        if copied {
            if let Some(done) = self.dead_letters.remove(&id) {
                self.stats.dead_lettered += done.entries.len() as u64;
                let ids = done.entries.iter().map(|d| d.source_id).collect();
                self.ack(ids);
            }
        } else {
            let min = self.config.retry_min_ms;
            let max = self.config.retry_max_ms;
            if let Some(pending) = self.dead_letters.get_mut(&id) {
                pending.attempts = pending.attempts.saturating_add(1);
                pending.retry_at = Some(now.plus(backoff_ms(pending.attempts, min, max)));
            }
        }
    }

    /// Entries that may still be asked for without passing `max_held`.
    fn room(&self) -> usize {
        self.config
            .max_held()
            .saturating_sub(self.held.len() + self.read_reserved + self.claim_reserved)
    }

    /// Reads go out while running, and while stopping only to finish draining this
    /// consumer's own pending entries: a clean exit leaves none of them pending, including
    /// those whose ack was lost on the way out.
    fn may_read(&self) -> bool {
        !self.stopping || matches!(self.next_read, ReadFrom::Pending { .. })
    }

    fn advance(&mut self, now: Now) {
        // Monotonic by contract; kept so all the same if a caller's clock is not.
        self.now = self.now.max(now.mono);
        self.wall = now.wall;
    }

    fn backoff(&self, attempt: u32) -> u64 {
        backoff_ms(attempt, self.config.retry_min_ms, self.config.retry_max_ms)
    }

    fn ack(&mut self, ids: Vec<EntryId>) {
        for id in &ids {
            self.held.remove(id);
        }
        if !ids.is_empty() {
            self.out.push_back(Command::Ack(ids));
        }
    }

    /// Decodes entries into rows and dead letters. Entries already held are skipped: a claim
    /// or a pending drain can hand back what a write is still storing.
    fn ingest(&mut self, entries: Vec<StreamEntry>, deleted: Vec<EntryId>) {
        let mut dead = Vec::new();
        let size = self.config.batch_size.max(1);
        for id in deleted {
            if self.held.insert(id) {
                self.stats.records += 1;
                dead.push(DeadLetter {
                    source_id: id,
                    payload: None,
                    reason: DELETED_REASON.to_owned(),
                });
            }
        }
        for entry in entries {
            if !self.held.insert(entry.id) {
                continue;
            }
            self.stats.records += 1;
            let decoded = match &entry.payload {
                Some(payload) => decode_position(payload),
                None => Err(crate::CodecError::MissingPayload),
            };
            match decoded {
                Err(error) => {
                    self.stats.decode_errors += 1;
                    dead.push(DeadLetter {
                        source_id: entry.id,
                        payload: entry.payload,
                        reason: error.to_string(),
                    });
                }
                Ok(position) => {
                    let row = WriteRow {
                        faulty: is_faulty(&position, self.wall, &self.config.faulty),
                        position,
                        received_at: self.wall,
                        entries: vec![(entry.id, entry.deliveries)],
                        payloads: vec![entry.payload.unwrap_or_default()],
                    };
                    self.add_to_open(row, size);
                }
            }
        }
        if !dead.is_empty() {
            self.queue_dead_letters(dead);
        }
    }

    /// Rows join the open write, one row per key (duplicates of a key carry all their
    /// entries), and wait there until a slot is free (`pump`) or the batch is full. Under a
    /// steady trickle every read brings a few entries while both writes are in flight;
    /// written a read a write, each would cost a commit, and the writer stored a few rows
    /// per commit time (measured: 1,000 positions a second arriving, about 240 stored a
    /// second, 3 rows a write). Open, a write takes what arrived while the others
    /// committed.
    fn add_to_open(&mut self, row: WriteRow, size: usize) {
        let key = (row.position.device_id.clone(), row.position.ts.as_i64());
        if let Some(&i) = self.open_keys.get(&key) {
            self.open[i].entries.extend(row.entries);
            self.open[i].payloads.extend(row.payloads);
            return;
        }
        self.open_keys.insert(key, self.open.len());
        self.open.push(row);
        if self.open.len() >= size {
            self.seal_open();
        }
    }

    /// Queues the open write, its rows in the key's order: one lock order for every writer
    /// (device ids are in the "C" collation), so that concurrent transactions cannot
    /// deadlock on the positions key.
    fn seal_open(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let mut rows = std::mem::take(&mut self.open);
        self.open_keys.clear();
        rows.sort_by(|a, b| {
            (a.position.device_id.as_str(), a.position.ts)
                .cmp(&(b.position.device_id.as_str(), b.position.ts))
        });
        self.queue_write(rows.into(), false);
    }

    fn queue_write(&mut self, rows: Arc<[WriteRow]>, front: bool) {
        let id = WriteId(self.next_write_id);
        self.next_write_id += 1;
        self.writes.insert(
            id,
            PendingWrite {
                rows,
                attempts: 0,
                state: WriteState::Queued,
            },
        );
        if front {
            self.queue.push_front(id);
        } else {
            self.queue.push_back(id);
        }
    }

    fn queue_dead_letters(&mut self, entries: Vec<DeadLetter>) {
        let id = DeadLetterId(self.next_dead_letter_id);
        self.next_dead_letter_id += 1;
        self.out.push_back(Command::DeadLetter {
            id,
            entries: entries.clone(),
        });
        self.dead_letters.insert(
            id,
            PendingDeadLetter {
                entries,
                attempts: 0,
                retry_at: None,
            },
        );
    }

    /// Postgres rejected a write for its data: isolate the bad row by halving. A lone bad
    /// row's entries are released to be delivered again, or dead-lettered once they have
    /// been delivered `max_deliveries` times.
    fn split_rejected(&mut self, rows: &Arc<[WriteRow]>, reason: &str, row: Option<usize>) {
        if rows.len() <= 1 {
            self.stats.rejected_rows += rows.len() as u64;
            let mut dead = Vec::new();
            for row in rows.iter() {
                for (&(id, deliveries), payload) in row.entries.iter().zip(&row.payloads) {
                    if deliveries >= self.config.max_deliveries {
                        dead.push(DeadLetter {
                            source_id: id,
                            payload: Some(payload.clone()),
                            reason: format!("rejected by Postgres: {reason}"),
                        });
                    } else {
                        self.held.remove(&id);
                    }
                }
            }
            if !dead.is_empty() {
                self.queue_dead_letters(dead);
            }
            return;
        }
        let parts: Vec<Arc<[WriteRow]>> = match row {
            Some(i) if i < rows.len() => {
                let bad: Arc<[WriteRow]> = vec![rows[i].clone()].into();
                let rest: Vec<WriteRow> = rows
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, r)| r.clone())
                    .collect();
                vec![bad, rest.into()]
            }
            _ => {
                let mid = rows.len() / 2;
                vec![rows[..mid].to_vec().into(), rows[mid..].to_vec().into()]
            }
        };
        // Front of the queue, in order: the halves were already due.
        for part in parts.into_iter().rev() {
            self.queue_write(part, true);
        }
    }

    /// Issues every command the current state allows.
    fn pump(&mut self) {
        let now = self.now;
        for (id, write) in self.writes.iter_mut() {
            if matches!(write.state, WriteState::RetryAt(t) if t <= now) {
                write.state = WriteState::Queued;
                self.queue.push_back(*id);
            }
        }
        for (id, pending) in self.dead_letters.iter_mut() {
            if matches!(pending.retry_at, Some(t) if t <= now) {
                pending.retry_at = None;
                self.out.push_back(Command::DeadLetter {
                    id: *id,
                    entries: pending.entries.clone(),
                });
            }
        }
        while self.writes_in_flight < self.config.max_in_flight.max(1) {
            if self.queue.is_empty() {
                self.seal_open();
            }
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(write) = self.writes.get_mut(&id) else {
                continue;
            };
            write.state = WriteState::InFlight;
            self.writes_in_flight += 1;
            self.out.push_back(Command::Write {
                id,
                rows: write.rows.clone(),
            });
        }
        let batch = self.config.batch_size.max(1);
        // The claim gets its room first: claims are rare and bounded, while under a steady
        // stream a read would always take the room and a dead consumer's entries would wait
        // forever. (The read is still issued first: the order means nothing to the shell.)
        let mut claim = None;
        let room = self.room();
        if !self.stopping
            && !self.claim_in_flight
            && (self.claim_cursor.is_some() || self.next_claim_at <= now)
            && room > 0
        {
            let count = room.min(batch);
            self.claim_in_flight = true;
            self.claim_reserved = count;
            claim = Some(Command::Claim {
                cursor: self.claim_cursor.unwrap_or_default(),
                min_idle_ms: self.config.claim_idle_ms,
                count,
            });
        }
        let room = self.room();
        if self.may_read()
            && self.read_in_flight.is_none()
            && self.read_retry_at.is_none_or(|t| t <= now)
            && room > 0
        {
            let from = self.next_read;
            let count = room.min(batch);
            self.read_in_flight = Some(from);
            self.read_reserved = count;
            self.read_retry_at = None;
            self.out.push_back(Command::Read { from, count });
        }
        self.out.extend(claim);
    }
}
