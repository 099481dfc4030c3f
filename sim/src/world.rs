//! The simulated world: the shared stream and store, the instances, and the commands in
//! flight between them.
//!
//! The world plays the part of the shell (executing each command against the stand-in
//! servers and handing the answer back exactly as the shell would) and of the servers. It
//! decides nothing by itself: which command runs next, when, and how it fails is chosen by a
//! driver ([`crate::swarm`], or a scripted test). It reports every server-side event to the
//! [`Checker`] and records every command and input in the [`Trace`].

use std::collections::BTreeMap;

use processor_core::durable::{
    Command, DeadLetter, DurableConfig, DurableWriter, Input, ReadFrom, WriteFailure,
};
use processor_core::stream::EntryId;
use processor_core::{MonoMillis, Now, UnixMillis};

use crate::checker::{Checker, ViolationKind};
use crate::defect::{Defect, SimWriter};
use crate::finding::FindingKind;
use crate::instance::Instance;
use crate::op::{Answer, AnswerText, CommandText, Op, OpFault, OpId, Stage};
use crate::store::{MemStore, StoreError};
use crate::stream::{Delivery, MemStream};
use crate::trace::{fingerprint, Trace};
use crate::traffic::{GeneratedEntry, T0};

/// Counts of what the servers did, for the run report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorldStats {
    pub starts: u64,
    pub crashes: u64,
    pub clean_exits: u64,
    pub reads: u64,
    pub claims: u64,
    pub claimed_entries: u64,
    pub writes: u64,
    pub commits: u64,
    pub rejected_writes: u64,
    pub transient_writes: u64,
    pub dead_letter_batches: u64,
    pub acks: u64,
    pub deletes: u64,
    pub faults_injected: u64,
    /// The most entries any writer held beyond `DurableConfig::max_held`.
    pub max_held_over: u64,
    /// Pending ids a claim reported as deleted from the stream.
    pub claimed_deleted: u64,
    /// Writes that committed but whose answer was lost.
    pub commits_answer_lost: u64,
    /// Commands executed after their instance had crashed.
    pub orphan_commands: u64,
    /// Dead-letter batches only partly written.
    pub partial_dead_letters: u64,
    /// Reads of this consumer's pending entries that returned something.
    pub pending_redeliveries: u64,
}

/// The world.
#[derive(Debug)]
pub struct World {
    now: u64,
    stream: MemStream,
    dead_letter_stream: Vec<DeadLetter>,
    store: MemStore,
    slots: Vec<Option<Instance>>,
    ops: BTreeMap<OpId, Op>,
    next_op: u64,
    fresh: Vec<OpId>,
    next_incarnation: u64,
    config: DurableConfig,
    defect: Defect,
    report_row_index: bool,
    checker: Checker,
    trace: Trace,
    stats: WorldStats,
}

impl World {
    /// A world with `slots` places for instances (none started), at time [`T0`].
    pub fn new(
        config: DurableConfig,
        slots: usize,
        defect: Defect,
        report_row_index: bool,
        trace_keep: usize,
    ) -> World {
        let checker = Checker::new(config.max_deliveries, config.faulty);
        let mut world = World {
            now: T0,
            stream: MemStream::new(),
            dead_letter_stream: Vec::new(),
            store: MemStore::new(),
            slots: (0..slots).map(|_| None).collect(),
            ops: BTreeMap::new(),
            next_op: 0,
            fresh: Vec::new(),
            next_incarnation: 0,
            config,
            defect,
            report_row_index,
            checker,
            trace: Trace::new(trace_keep),
            stats: WorldStats::default(),
        };
        world.checker.set_now(T0);
        world
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// Moves the servers' clock forward (never back).
    pub fn advance_to(&mut self, t: u64) {
        if t > self.now {
            self.now = t;
            self.checker.set_now(t);
        }
    }

    pub fn config(&self) -> &DurableConfig {
        &self.config
    }

    pub fn stream(&self) -> &MemStream {
        &self.stream
    }

    pub fn store(&self) -> &MemStore {
        &self.store
    }

    pub fn dead_letter_stream(&self) -> &[DeadLetter] {
        &self.dead_letter_stream
    }

    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn stats(&self) -> &WorldStats {
        &self.stats
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn instance(&self, slot: usize) -> Option<&Instance> {
        self.slots.get(slot).and_then(|s| s.as_ref())
    }

    pub fn live_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|s| self.slots[*s].is_some())
            .collect()
    }

    pub fn ops(&self) -> &BTreeMap<OpId, Op> {
        &self.ops
    }

    pub fn op(&self, id: OpId) -> Option<&Op> {
        self.ops.get(&id)
    }

    /// Commands issued since the last call, for the driver to schedule.
    pub fn take_fresh(&mut self) -> Vec<OpId> {
        std::mem::take(&mut self.fresh)
    }

    /// Records a fault the driver injects (for the trace and the counts).
    pub fn note_fault(&mut self, what: &str) {
        self.stats.faults_injected += 1;
        self.trace
            .record(format_args!("t={} fault {what}", self.now));
    }

    /// Records a violation only the driver can see (liveness, timers).
    pub fn violation(&mut self, kind: ViolationKind, detail: String) {
        self.checker.on_driver_violation(kind, detail);
    }

    /// Records a finding only the driver can see.
    pub fn find(&mut self, kind: FindingKind, detail: String) {
        self.checker.find(kind, detail);
    }

    /// `XADD` of a generated entry at the current time.
    pub fn append(&mut self, entry: GeneratedEntry) -> EntryId {
        let id = self.stream.add(self.now, entry.payload.clone());
        self.trace.record(format_args!(
            "t={} append {id} {:x}",
            self.now,
            entry.payload.as_deref().map_or(0, fingerprint)
        ));
        self.checker.on_append(id, &entry);
        id
    }

    /// `XDEL` of an entry.
    pub fn delete(&mut self, id: EntryId) -> bool {
        self.trace
            .record(format_args!("t={} delete {id}", self.now));
        let existed = self.stream.delete(id);
        if existed {
            self.stats.deletes += 1;
            self.checker.on_deleted(id);
        }
        existed
    }

    /// Takes Postgres down or brings it back.
    pub fn set_store_down(&mut self, down: bool) {
        if self.store.is_down() != down {
            self.trace
                .record(format_args!("t={} store down={down}", self.now));
            self.store.set_down(down);
        }
    }

    /// Starts a fresh writer in an empty slot under `consumer`, its clock `skew_ms` off.
    pub fn start(&mut self, slot: usize, consumer: String, skew_ms: i64) {
        assert!(self.slots[slot].is_none(), "slot {slot} is taken");
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let now = Now {
            mono: MonoMillis(self.now),
            wall: UnixMillis((self.now as i64).saturating_add(skew_ms)),
        };
        self.trace.record(format_args!(
            "t={} start slot={slot} consumer={consumer} inc={incarnation} skew={skew_ms}",
            self.now
        ));
        let writer = SimWriter::new(DurableWriter::new(self.config.clone(), now), self.defect);
        self.slots[slot] = Some(Instance {
            consumer,
            incarnation,
            writer,
            skew_ms,
            stopping: false,
        });
        self.stats.starts += 1;
        self.drain(slot);
    }

    /// Kills the instance in `slot`. Commands it sent that `keep` accepts still reach their
    /// server (their answers go nowhere); the others, and every answer on its way back, are
    /// lost.
    pub fn crash(&mut self, slot: usize, keep: &mut dyn FnMut(OpId, &Op) -> bool) {
        let Some(instance) = self.slots[slot].take() else {
            return;
        };
        self.stats.crashes += 1;
        self.trace.record(format_args!(
            "t={} crash slot={slot} consumer={} inc={}",
            self.now, instance.consumer, instance.incarnation
        ));
        let left = self.stream.pending_of(&instance.consumer);
        self.checker.on_orphaned(&left);
        let mine: Vec<OpId> = self
            .ops
            .iter()
            .filter(|(_, op)| op.slot == slot && op.incarnation == instance.incarnation)
            .map(|(id, _)| *id)
            .collect();
        for id in mine {
            let op = &self.ops[&id];
            let kept = matches!(op.stage, Stage::Sent(_)) && keep(id, op);
            self.trace.record(format_args!("  op{} kept={kept}", id.0));
            if kept {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.orphan = true;
                }
            } else {
                self.ops.remove(&id);
            }
        }
    }

    /// Asks the instance in `slot` to stop.
    pub fn shutdown(&mut self, slot: usize) {
        let now = self.now;
        let Some(instance) = self.slots[slot].as_mut() else {
            return;
        };
        instance.stopping = true;
        let t = instance.now(now);
        self.trace
            .record(format_args!("t={now} slot={slot} shutdown"));
        instance.writer.handle(t, Input::Shutdown);
        self.drain(slot);
    }

    /// Fires the timer of the instance in `slot`; returns how many commands it issued.
    pub fn timeout(&mut self, slot: usize) -> usize {
        let now = self.now;
        let Some(instance) = self.slots[slot].as_mut() else {
            return 0;
        };
        let t = instance.now(now);
        self.trace
            .record(format_args!("t={now} slot={slot} timeout"));
        instance.writer.handle(t, Input::Timeout);
        self.drain(slot)
    }

    /// Steps the clock of the instance in `slot`.
    pub fn set_skew(&mut self, slot: usize, skew_ms: i64) {
        if let Some(instance) = self.slots[slot].as_mut() {
            self.trace
                .record(format_args!("t={} slot={slot} skew={skew_ms}", self.now));
            instance.skew_ms = skew_ms;
        }
    }

    /// When the instance in `slot` wants its timer, in simulated time.
    pub fn deadline(&self, slot: usize) -> Option<u64> {
        self.instance(slot).and_then(Instance::deadline)
    }

    /// True for a read of new entries that would block now (nothing undelivered).
    pub fn would_block(&self, id: OpId) -> bool {
        self.ops
            .get(&id)
            .is_some_and(|op| op.is_new_read() && !op.orphan)
            && self.stream.undelivered() == 0
    }

    /// True while the instance's commands are still in flight.
    pub fn has_ops_of(&self, slot: usize, incarnation: u64) -> bool {
        self.ops
            .values()
            .any(|op| op.slot == slot && op.incarnation == incarnation && !op.orphan)
    }

    /// Runs the next step of a command: a sent command is executed by its server (with
    /// `fault`); an answer is handed to its writer. True when an answer is now on its way.
    pub fn execute(&mut self, id: OpId, fault: OpFault) -> bool {
        let Some(op) = self.ops.remove(&id) else {
            return false;
        };
        let Op {
            slot,
            incarnation,
            consumer,
            stage,
            orphan,
        } = op;
        match stage {
            Stage::Sent(command) => {
                if fault != OpFault::None {
                    self.stats.faults_injected += 1;
                }
                self.trace.record(format_args!(
                    "t={} exec op{} {fault:?}{}",
                    self.now,
                    id.0,
                    if orphan { " orphan" } else { "" }
                ));
                if orphan {
                    self.stats.orphan_commands += 1;
                }
                let answer = self.perform(&consumer, orphan, command, fault);
                match answer {
                    Some(answer) if !orphan => {
                        self.ops.insert(
                            id,
                            Op {
                                slot,
                                incarnation,
                                consumer,
                                stage: Stage::Answered(answer),
                                orphan,
                            },
                        );
                        true
                    }
                    _ => false,
                }
            }
            Stage::Answered(answer) => {
                self.deliver(slot, incarnation, id, answer);
                false
            }
        }
    }

    fn perform(
        &mut self,
        consumer: &str,
        orphan: bool,
        command: Command,
        fault: OpFault,
    ) -> Option<Answer> {
        let now = self.now;
        match command {
            Command::Read { from, count } => {
                self.stats.reads += 1;
                if fault == OpFault::Before {
                    return Some(Answer::Read(Err("connection refused".into())));
                }
                let got = match from {
                    ReadFrom::New => self.stream.read_new(consumer, count.max(1), now),
                    ReadFrom::Pending { after } => {
                        let got = self.stream.read_pending(consumer, after, count.max(1), now);
                        if !got.is_empty() {
                            self.stats.pending_redeliveries += 1;
                        }
                        got
                    }
                };
                self.delivered(&got, orphan);
                if fault != OpFault::None {
                    return Some(Answer::Read(Err("connection reset".into())));
                }
                Some(Answer::Read(Ok(got
                    .into_iter()
                    .map(Delivery::into_entry)
                    .collect())))
            }
            Command::Claim {
                cursor,
                min_idle_ms,
                count,
            } => {
                self.stats.claims += 1;
                if fault == OpFault::Before {
                    return Some(Answer::Claimed(Err("connection refused".into())));
                }
                let claim = self
                    .stream
                    .autoclaim(consumer, min_idle_ms, cursor, count.max(1), now);
                self.stats.claimed_entries += claim.claimed.len() as u64;
                self.stats.claimed_deleted += claim.deleted.len() as u64;
                self.delivered(&claim.claimed, orphan);
                if fault != OpFault::None {
                    return Some(Answer::Claimed(Err("connection reset".into())));
                }
                Some(Answer::Claimed(Ok(claim.into_result())))
            }
            Command::Write { id, rows } => {
                self.stats.writes += 1;
                if fault == OpFault::Before {
                    self.stats.transient_writes += 1;
                    let failure = WriteFailure::Transient("could not connect to server".into());
                    return Some(Answer::Written(id, Err(failure)));
                }
                let outcome = match self.store.insert(&rows) {
                    Ok(inserted) => {
                        self.stats.commits += 1;
                        self.checker.on_commit(&rows, &inserted);
                        if fault == OpFault::None {
                            Ok(inserted.iter().filter(|new| **new).count() as u64)
                        } else {
                            self.stats.transient_writes += 1;
                            self.stats.commits_answer_lost += 1;
                            Err(WriteFailure::Transient(
                                "connection closed before the commit was acknowledged".into(),
                            ))
                        }
                    }
                    Err(StoreError::Unavailable) => {
                        self.stats.transient_writes += 1;
                        Err(WriteFailure::Transient(
                            "the database system is shutting down".into(),
                        ))
                    }
                    Err(StoreError::Rejected { reason, row }) => {
                        self.stats.rejected_writes += 1;
                        Err(WriteFailure::Rejected {
                            reason,
                            row: self.report_row_index.then_some(row),
                        })
                    }
                };
                Some(Answer::Written(id, outcome))
            }
            Command::DeadLetter { id, entries } => {
                self.stats.dead_letter_batches += 1;
                if fault == OpFault::Before {
                    return Some(Answer::DeadLettered(id, Err("connection refused".into())));
                }
                let written = match fault {
                    OpFault::Partial(n) => {
                        self.stats.partial_dead_letters += 1;
                        n.min(entries.len())
                    }
                    _ => entries.len(),
                };
                self.dead_letter_stream
                    .extend(entries[..written].iter().cloned());
                self.checker.on_dead_lettered(&entries[..written]);
                if fault == OpFault::None {
                    Some(Answer::DeadLettered(id, Ok(())))
                } else {
                    Some(Answer::DeadLettered(id, Err("connection reset".into())))
                }
            }
            Command::Ack(ids) => {
                self.stats.acks += 1;
                if fault == OpFault::Before {
                    return Some(Answer::Acked(Err("connection refused".into())));
                }
                self.checker.on_ack(&ids);
                self.stream.ack(&ids);
                if fault == OpFault::None {
                    None
                } else {
                    Some(Answer::Acked(Err("connection reset".into())))
                }
            }
        }
    }

    fn delivered(&mut self, got: &[Delivery], orphan: bool) {
        self.checker.on_delivered(got);
        if orphan {
            let ids: Vec<EntryId> = got.iter().map(|d| d.id).collect();
            self.checker.on_orphaned(&ids);
        }
    }

    fn deliver(&mut self, slot: usize, incarnation: u64, id: OpId, answer: Answer) {
        let now = self.now;
        let Some(instance) = self.slots[slot]
            .as_mut()
            .filter(|i| i.incarnation == incarnation)
        else {
            self.trace
                .record(format_args!("t={now} op{} answer lost", id.0));
            return;
        };
        let t = instance.now(now);
        self.trace.record(format_args!(
            "t={now} slot={slot} op{} {}",
            id.0,
            AnswerText(&answer)
        ));
        instance.writer.handle(t, answer);
        self.drain(slot);
    }

    /// Takes every command the writer in `slot` has issued; returns how many.
    fn drain(&mut self, slot: usize) -> usize {
        let mut issued = 0;
        let now = self.now;
        let Some(instance) = self.slots[slot].as_mut() else {
            return 0;
        };
        while let Some(command) = instance.writer.poll_command() {
            let id = OpId(self.next_op);
            self.next_op += 1;
            self.trace.record(format_args!(
                "t={now} slot={slot} op{} {}",
                id.0,
                CommandText(&command)
            ));
            self.ops.insert(
                id,
                Op {
                    slot,
                    incarnation: instance.incarnation,
                    consumer: instance.consumer.clone(),
                    stage: Stage::Sent(command),
                    orphan: false,
                },
            );
            self.fresh.push(id);
            issued += 1;
        }
        let held = instance.writer.held();
        let bound = self.config.max_held();
        if held > bound {
            let over = (held - bound) as u64;
            self.stats.max_held_over = self.stats.max_held_over.max(over);
            self.checker.find(
                FindingKind::HeldOverBound,
                format!("slot {slot} holds {held} entries, max_held() is {bound}"),
            );
        }
        issued
    }

    /// Removes instances that have stopped cleanly (nothing held, nothing in flight);
    /// returns their slots.
    pub fn reap(&mut self) -> Vec<usize> {
        let mut reaped = Vec::new();
        for slot in 0..self.slots.len() {
            let done = self.slots[slot].as_ref().is_some_and(|i| {
                i.stopping && i.writer.is_stopped() && !self.has_ops_of(slot, i.incarnation)
            });
            if !done {
                continue;
            }
            let Some(instance) = self.slots[slot].take() else {
                continue;
            };
            self.stats.clean_exits += 1;
            self.trace.record(format_args!(
                "t={} exit slot={slot} consumer={}",
                self.now, instance.consumer
            ));
            let left = self.stream.pending_of(&instance.consumer);
            if !left.is_empty() {
                // A refused row released for redelivery stays pending by design; anything
                // else is worth a look.
                let kind = if left.iter().all(|id| self.checker.is_refused(*id)) {
                    FindingKind::RefusedPendingAfterCleanExit
                } else {
                    FindingKind::PendingAfterCleanExit
                };
                let described: Vec<String> =
                    left.iter().map(|id| self.checker.describe(*id)).collect();
                self.checker.find(
                    kind,
                    format!(
                        "{} stopped cleanly with {} entries pending under its name: {}",
                        instance.consumer,
                        left.len(),
                        described.join(", ")
                    ),
                );
            }
            reaped.push(slot);
        }
        reaped
    }

    /// Nothing can change any more: every entry delivered and settled, no write, dead letter
    /// or ack in flight, no writer holding anything.
    pub fn is_quiet(&self) -> bool {
        self.stream.undelivered() == 0
            && self.stream.pending().is_empty()
            && self.ops.values().all(|op| match &op.stage {
                Stage::Sent(command) => {
                    matches!(command, Command::Read { .. } | Command::Claim { .. })
                }
                Stage::Answered(answer) => matches!(answer, Answer::Read(_) | Answer::Claimed(_)),
            })
            && self.slots.iter().flatten().all(|i| i.writer.held() == 0)
    }

    /// The end-of-run checks.
    pub fn finish(&mut self) {
        self.trace.record(format_args!("t={} finish", self.now));
        self.checker.finish(&self.stream, &self.store);
    }
}
