//! The driver: runs a [`World`] through simulated time, one seed deciding everything.
//!
//! A run has three phases:
//! 1. **faults**: entries are appended while commands complete after random latencies (so in
//!    any order), fail before or after taking effect, instances crash (with or without their
//!    commands on the wire reaching the servers) and restart under their old or a new name,
//!    stop gracefully, stall, have their clocks stepped, Postgres goes down, entries are
//!    deleted, timers fire unasked;
//! 2. **healing**: no more faults, every slot gets a running instance, and the run goes on
//!    until it is quiet (everything delivered and settled) or a generous budget runs out;
//! 3. **stopping**: every instance is asked to shut down and must get there.
//!
//! The checker then judges the final state.
//!
//! Time jumps from event to event: the next due command step, the next writer timer, the
//! next fault. A read of new entries blocks (up to `block_ms`) until an append wakes it.

use std::collections::{BTreeMap, BTreeSet};

use processor_core::durable::Command;
use processor_core::stream::EntryId;

use crate::checker::ViolationKind;
use crate::defect::Defect;
use crate::faults::{FaultPlan, OpFaults};
use crate::op::{OpFault, OpId, Stage};
use crate::report::RunReport;
use crate::rng::SimRng;
use crate::traffic::Traffic;
use crate::world::World;

/// How to run a seed.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub defect: Defect,
    /// Keep this many trace records as text, for a failure report (0: hash only).
    pub trace_keep: usize,
    /// Stop a run that takes more events than this (a livelock in the system or the driver).
    pub max_events: u64,
    /// Halt at the first violation, so that the trace kept ends where things went wrong.
    pub halt_at_violation: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            defect: Defect::None,
            trace_keep: 0,
            max_events: 2_000_000,
            halt_at_violation: false,
        }
    }
}

/// Runs one seed from start to finish. Prints `SIM_SEED=<seed>` first.
pub fn run(seed: u64, options: &RunOptions) -> RunReport {
    eprintln!("SIM_SEED={seed}");
    let mut root = SimRng::new(seed);
    let plan = FaultPlan::draw(&mut root.fork());
    let world = World::new(
        plan.durable.clone(),
        plan.instances,
        options.defect,
        plan.report_row_index,
        options.trace_keep,
    );
    let mut swarm = Swarm::new(world, plan, root.fork(), root.fork(), options.max_events);
    swarm.halt_at_violation = options.halt_at_violation;
    swarm.fault_phase();
    swarm.settle(seed).0
}

/// Heals, stops and checks a world whose history was made elsewhere (e.g. by a scripted
/// test): its commands in flight are scheduled, empty slots get instances, and the run goes
/// on without faults as in the healing phase of [`run`]. The world is handed back for
/// inspection.
pub fn settle(world: World, plan: FaultPlan, seed: u64, max_events: u64) -> (RunReport, World) {
    let mut rng = SimRng::new(seed);
    let traffic_rng = rng.fork();
    let mut swarm = Swarm::new(world, plan, rng, traffic_rng, max_events);
    swarm.adopt();
    swarm.heal();
    swarm.settle(seed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Faults,
    Healing,
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The next step of a command: executed by its server, or its answer delivered.
    Op(OpId),
    /// A blocked read's `BLOCK` ran out.
    BlockTimeout(OpId),
    Append,
    Crash,
    Restart(usize),
    Stop,
    /// A stopping instance ran out of grace time (slot, incarnation).
    GraceOver(usize, u64),
    Stall,
    Trim,
    OutageStart,
    OutageEnd,
    ClockStep,
    SpuriousTimeout,
    Heal,
}

struct Swarm {
    world: World,
    plan: FaultPlan,
    rng: SimRng,
    traffic: Traffic,
    traffic_rng: SimRng,
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    parked: BTreeSet<OpId>,
    block_until: BTreeMap<OpId, u64>,
    frozen_until: Vec<u64>,
    stale: Vec<bool>,
    names: Vec<String>,
    next_name: u64,
    phase: Phase,
    appended: usize,
    events: u64,
    max_events: u64,
    started_at: u64,
    halt_at_violation: bool,
    /// The event budget ran out: nothing more is simulated, the final checks still run.
    exhausted: bool,
}

impl Swarm {
    fn new(
        world: World,
        plan: FaultPlan,
        rng: SimRng,
        traffic_rng: SimRng,
        max_events: u64,
    ) -> Swarm {
        let slots = world.slot_count();
        let started_at = world.now();
        Swarm {
            traffic: Traffic::new(plan.mix.clone()),
            world,
            plan,
            rng,
            traffic_rng,
            queue: BTreeMap::new(),
            seq: 0,
            parked: BTreeSet::new(),
            block_until: BTreeMap::new(),
            frozen_until: vec![0; slots],
            stale: vec![false; slots],
            names: vec![String::new(); slots],
            next_name: 0,
            phase: Phase::Faults,
            appended: 0,
            events: 0,
            max_events,
            started_at,
            halt_at_violation: false,
            exhausted: false,
        }
    }

    fn halted(&self) -> bool {
        self.halt_at_violation && !self.world.checker().violations().is_empty()
    }

    fn now(&self) -> u64 {
        self.world.now()
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.queue.insert((at, self.seq), event);
        self.seq += 1;
    }

    fn schedule_in(&mut self, every: Option<u64>, event: Event) {
        if let Some(every) = every {
            let delay = self.rng.range(every / 2, every + every / 2).max(1);
            self.schedule(self.now() + delay, event);
        }
    }

    fn fault_phase(&mut self) {
        for _ in 0..self.plan.preloaded.min(self.plan.entries) {
            self.append_one();
        }
        for slot in 0..self.world.slot_count() {
            self.start(slot);
        }
        self.schedule_next_append();
        let p = self.plan.clone();
        self.schedule_in(p.crash_every_ms, Event::Crash);
        self.schedule_in(p.stop_every_ms, Event::Stop);
        self.schedule_in(p.stall_every_ms, Event::Stall);
        self.schedule_in(p.trim_every_ms, Event::Trim);
        self.schedule_in(p.outage_every_ms, Event::OutageStart);
        self.schedule_in(p.clock_step_every_ms, Event::ClockStep);
        self.schedule_in(p.spurious_timeout_every_ms, Event::SpuriousTimeout);
        self.schedule(self.started_at + p.fault_phase_ms, Event::Heal);
        self.schedule_fresh();
        self.run_until(|s| s.phase != Phase::Faults, u64::MAX);
    }

    /// Schedules the commands of a world made elsewhere.
    fn adopt(&mut self) {
        for slot in 0..self.world.slot_count() {
            if let Some(i) = self.world.instance(slot) {
                self.names[slot] = i.consumer.clone();
            }
        }
        self.world.take_fresh();
        let ids: Vec<OpId> = self.world.ops().keys().copied().collect();
        for id in ids {
            let delay = self.plan.redis_latency.draw(&mut self.rng);
            self.schedule(self.now() + delay, Event::Op(id));
        }
        self.appended = self.plan.entries;
    }

    fn heal(&mut self) {
        self.phase = Phase::Healing;
        self.world.set_store_down(false);
        while self.appended < self.plan.entries {
            self.append_one();
        }
        for slot in 0..self.world.slot_count() {
            if self.world.instance(slot).is_none() {
                self.start(slot);
            }
        }
        self.schedule_fresh();
    }

    fn settle(mut self, seed: u64) -> (RunReport, World) {
        if self.phase == Phase::Faults {
            self.heal();
        }
        if !self.halted() {
            self.heal_and_stop();
        }
        self.report_and_world(seed)
    }

    /// Runs until quiet, shuts every instance down, runs until they have stopped, and has
    /// the checker judge the final state.
    fn heal_and_stop(&mut self) {
        let budget = self.plan.healing_budget_ms();
        let deadline = self.now() + budget;
        let quiet = self.run_until(|s| s.world.is_quiet(), deadline);
        if self.halted() {
            return;
        }
        if !quiet && !self.exhausted {
            let detail = format!(
                "not quiet {budget} ms after healing began: {} pending, {} undelivered, {} commands in flight, {} events",
                self.world.stream().pending().len(),
                self.world.stream().undelivered(),
                self.world.ops().len(),
                self.events
            );
            self.world.violation(ViolationKind::Liveness, detail);
        }
        self.phase = Phase::Stopping;
        for slot in self.world.live_slots() {
            self.stale[slot] = false;
            self.world.shutdown(slot);
        }
        self.schedule_fresh();
        self.reap();
        let limit = 60_000 + self.plan.durable.retry_max_ms * 10 + self.plan.block_ms * 2;
        let deadline = self.now() + limit;
        let stopped = self.run_until(|s| s.world.live_slots().is_empty(), deadline);
        if self.halted() {
            return;
        }
        if !stopped && !self.exhausted {
            let detail = format!(
                "instances in slots {:?} did not stop within {limit} ms of shutdown",
                self.world.live_slots()
            );
            self.world.violation(ViolationKind::Liveness, detail);
        }
        self.world.finish();
    }

    fn report_and_world(self, seed: u64) -> (RunReport, World) {
        let checker = self.world.checker();
        let report = RunReport {
            seed,
            plan: self.plan.clone(),
            violations: checker.violations().to_vec(),
            more_violations: checker.more_violations(),
            findings: checker.findings().clone(),
            trace_hash: self.world.trace().hash(),
            trace_records: self.world.trace().records(),
            trace_tail: self.world.trace().tail(),
            checker: checker.stats().clone(),
            world: self.world.stats().clone(),
            events: self.events,
            sim_ms: self.now() - self.started_at,
        };
        (report, self.world)
    }

    /// Processes events until `done` holds; false if the deadline or the event budget came
    /// first, or nothing was left to happen.
    fn run_until(&mut self, done: impl Fn(&Swarm) -> bool, deadline: u64) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.halted() {
                return false;
            }
            if self.exhausted {
                return false;
            }
            if self.events >= self.max_events {
                let detail = format!(
                    "event budget of {} exhausted at t={} ({} commands in flight)",
                    self.max_events,
                    self.now(),
                    self.world.ops().len()
                );
                self.world.violation(ViolationKind::Liveness, detail);
                self.exhausted = true;
                return false;
            }
            let next_event = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self.next_timer();
            let timer_first = match (next_event, next_timer) {
                (None, None) => return false,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(e), Some((t, _))) => t < e,
            };
            let at = if timer_first {
                next_timer.map(|(t, _)| t)
            } else {
                next_event
            }
            .unwrap_or_default();
            if at > deadline {
                return false;
            }
            self.events += 1;
            self.world.advance_to(at);
            if timer_first {
                if let Some((_, slot)) = next_timer {
                    self.fire_timer(slot);
                }
            } else if let Some((_, event)) = self.queue.pop_first() {
                self.handle(event);
            }
            self.schedule_fresh();
            self.reap();
        }
    }

    fn next_timer(&self) -> Option<(u64, usize)> {
        let now = self.now();
        let mut best: Option<(u64, usize)> = None;
        for slot in self.world.live_slots() {
            if self.stale[slot] {
                continue;
            }
            let Some(deadline) = self.world.deadline(slot) else {
                continue;
            };
            let at = deadline.max(self.frozen_until[slot]).max(now);
            if best.is_none_or(|(t, _)| at < t) {
                best = Some((at, slot));
            }
        }
        best
    }

    fn fire_timer(&mut self, slot: usize) {
        let issued = self.world.timeout(slot);
        let now = self.now();
        if issued == 0 {
            if let Some(deadline) = self.world.deadline(slot).filter(|d| *d <= now) {
                // The writer wants to be woken now, again, and will do nothing when it is:
                // stop trusting its timer until some other input reaches it.
                self.stale[slot] = true;
                let held = self.world.instance(slot).map_or(0, |i| i.writer.held());
                let detail = format!(
                    "slot {slot}: after a timeout input at t={now} nothing was issued and poll_timeout is still t={deadline} (held {held}, max_held {})",
                    self.world.config().max_held()
                );
                self.world.violation(ViolationKind::StaleDeadline, detail);
            }
        }
    }

    fn reap(&mut self) {
        for slot in self.world.reap() {
            match self.phase {
                Phase::Faults => {
                    let delay = self.rng.range(0, self.plan.restart_after_ms);
                    self.schedule(self.now() + delay, Event::Restart(slot));
                }
                Phase::Healing => self.schedule(self.now(), Event::Restart(slot)),
                Phase::Stopping => {}
            }
        }
    }

    fn schedule_fresh(&mut self) {
        for id in self.world.take_fresh() {
            let write = self.world.op(id).is_some_and(|op| op.is_write());
            let delay = if write {
                self.plan.postgres_latency.draw(&mut self.rng)
            } else {
                self.plan.redis_latency.draw(&mut self.rng)
            };
            self.schedule(self.now() + delay, Event::Op(id));
        }
    }

    fn faults_on(&self) -> bool {
        self.phase == Phase::Faults
    }

    fn pick_live(&mut self) -> Option<usize> {
        let live = self.world.live_slots();
        (!live.is_empty()).then(|| live[self.rng.index(live.len())])
    }

    fn handle(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Op(id) => self.step_op(id),
            Event::BlockTimeout(id) => {
                if self.parked.remove(&id) {
                    self.execute_request(id);
                }
            }
            Event::Append => {
                let burst = if self.rng.chance(self.plan.burst_p) {
                    self.rng.range(2, self.plan.burst_max)
                } else {
                    1
                };
                for _ in 0..burst {
                    if self.appended < self.plan.entries {
                        self.append_one();
                    }
                }
                self.schedule_next_append();
            }
            Event::Heal => self.heal(),
            Event::Restart(slot) => {
                if self.phase != Phase::Stopping && self.world.instance(slot).is_none() {
                    self.start(slot);
                }
            }
            Event::GraceOver(slot, incarnation) => {
                if self
                    .world
                    .instance(slot)
                    .is_some_and(|i| i.incarnation == incarnation)
                {
                    self.world.note_fault("grace over");
                    self.crash(slot);
                }
            }
            Event::OutageEnd => self.world.set_store_down(false),
            _ if !self.faults_on() => {}
            Event::Crash => {
                if let Some(slot) = self.pick_live() {
                    self.crash(slot);
                }
                self.schedule_in(self.plan.crash_every_ms, Event::Crash);
            }
            Event::Stop => {
                if let Some(slot) = self.pick_live() {
                    let instance = self.world.instance(slot);
                    if let Some(incarnation) =
                        instance.filter(|i| !i.stopping).map(|i| i.incarnation)
                    {
                        self.world.note_fault("stop");
                        self.stale[slot] = false;
                        self.world.shutdown(slot);
                        self.schedule(
                            now + self.plan.grace_ms,
                            Event::GraceOver(slot, incarnation),
                        );
                    }
                }
                self.schedule_in(self.plan.stop_every_ms, Event::Stop);
            }
            Event::Stall => {
                if let Some(slot) = self.pick_live() {
                    let ms = self.rng.range(1, self.plan.stall_max_ms);
                    self.world.note_fault(&format!("stall slot {slot} {ms} ms"));
                    self.frozen_until[slot] = self.frozen_until[slot].max(now + ms);
                }
                self.schedule_in(self.plan.stall_every_ms, Event::Stall);
            }
            Event::Trim => {
                self.trim();
                self.schedule_in(self.plan.trim_every_ms, Event::Trim);
            }
            Event::OutageStart => {
                let ms = self.rng.range(1, self.plan.outage_max_ms);
                self.world.set_store_down(true);
                self.schedule(now + ms, Event::OutageEnd);
                self.schedule_in(self.plan.outage_every_ms, Event::OutageStart);
            }
            Event::ClockStep => {
                if let Some(slot) = self.pick_live() {
                    let max = self.plan.skew_max_ms as i64;
                    let skew = self.rng.range_i64(-max, max);
                    self.world.set_skew(slot, skew);
                }
                self.schedule_in(self.plan.clock_step_every_ms, Event::ClockStep);
            }
            Event::SpuriousTimeout => {
                if let Some(slot) = self.pick_live().filter(|s| self.frozen_until[*s] <= now) {
                    self.world.timeout(slot);
                }
                self.schedule_in(self.plan.spurious_timeout_every_ms, Event::SpuriousTimeout);
            }
        }
    }

    fn step_op(&mut self, id: OpId) {
        let now = self.now();
        let Some(op) = self.world.op(id) else {
            return;
        };
        match op.stage {
            Stage::Sent(_) => {
                if self.world.would_block(id) {
                    let until = match self.block_until.get(&id) {
                        Some(until) => *until,
                        None => {
                            let until = now + self.plan.block_ms;
                            self.block_until.insert(id, until);
                            self.schedule(until, Event::BlockTimeout(id));
                            until
                        }
                    };
                    if now < until {
                        self.parked.insert(id);
                        return;
                    }
                }
                self.execute_request(id);
            }
            Stage::Answered(_) => {
                let slot = op.slot;
                let frozen = self.frozen_until[slot];
                let alive = self
                    .world
                    .instance(slot)
                    .is_some_and(|i| i.incarnation == op.incarnation);
                if alive && frozen > now {
                    self.schedule(frozen, Event::Op(id));
                    return;
                }
                self.world.execute(id, OpFault::None);
                if alive {
                    self.stale[slot] = false;
                }
            }
        }
    }

    fn execute_request(&mut self, id: OpId) {
        self.parked.remove(&id);
        self.block_until.remove(&id);
        let fault = if self.faults_on() {
            self.draw_fault(id)
        } else {
            OpFault::None
        };
        if self.world.execute(id, fault) {
            let delay = self.plan.redis_latency.draw(&mut self.rng);
            self.schedule(self.now() + delay, Event::Op(id));
        }
    }

    fn draw_fault(&mut self, id: OpId) -> OpFault {
        let Some(op) = self.world.op(id) else {
            return OpFault::None;
        };
        let (faults, batch): (OpFaults, usize) = match &op.stage {
            Stage::Sent(Command::Read { .. }) => (self.plan.read, 0),
            Stage::Sent(Command::Claim { .. }) => (self.plan.claim, 0),
            Stage::Sent(Command::Write { .. }) => (self.plan.write, 0),
            Stage::Sent(Command::DeadLetter { entries, .. }) => {
                (self.plan.dead_letter, entries.len())
            }
            Stage::Sent(Command::Ack(_)) => (self.plan.ack, 0),
            Stage::Answered(_) => return OpFault::None,
        };
        let u = self.rng.unit();
        if u < faults.fail_before {
            OpFault::Before
        } else if u < faults.fail_before + faults.fail_after {
            if batch > 1 && self.rng.chance(0.5) {
                OpFault::Partial(self.rng.index(batch))
            } else {
                OpFault::After
            }
        } else {
            OpFault::None
        }
    }

    fn start(&mut self, slot: usize) {
        let same = !self.names[slot].is_empty() && self.rng.chance(self.plan.same_name_p);
        if !same {
            self.names[slot] = format!("consumer-{}", self.next_name);
            self.next_name += 1;
        }
        let max = self.plan.skew_max_ms as i64;
        let skew = if max == 0 {
            0
        } else {
            self.rng.range_i64(-max, max)
        };
        self.frozen_until[slot] = 0;
        self.stale[slot] = false;
        self.world.start(slot, self.names[slot].clone(), skew);
    }

    fn crash(&mut self, slot: usize) {
        let keep_p = self.plan.crash_keeps_request_p;
        let rng = &mut self.rng;
        let parked = &mut self.parked;
        // A blocked read dies with its connection; other commands on the wire may or may
        // not reach their server.
        self.world.crash(slot, &mut |id, _| {
            if parked.remove(&id) {
                return false;
            }
            rng.chance(keep_p)
        });
        if self.phase == Phase::Faults {
            let delay = self.rng.range(0, self.plan.restart_after_ms);
            self.schedule(self.now() + delay, Event::Restart(slot));
        } else if self.phase == Phase::Healing {
            self.schedule(self.now(), Event::Restart(slot));
        }
    }

    fn trim(&mut self) {
        let pending: Vec<EntryId> = self.world.stream().pending().keys().copied().collect();
        let id = if !pending.is_empty() && self.rng.chance(0.7) {
            pending[self.rng.index(pending.len())]
        } else {
            let ids: Vec<EntryId> = self.world.stream().ids().collect();
            if ids.is_empty() {
                return;
            }
            ids[self.rng.index(ids.len())]
        };
        self.world.delete(id);
    }

    fn append_one(&mut self) {
        let entry = self.traffic.generate(&mut self.traffic_rng);
        self.world.append(entry);
        self.appended += 1;
        let now = self.now();
        for id in std::mem::take(&mut self.parked) {
            let delay = self.plan.redis_latency.draw(&mut self.rng);
            self.schedule(now + delay, Event::Op(id));
        }
    }

    fn schedule_next_append(&mut self) {
        if self.appended >= self.plan.entries {
            return;
        }
        let left = (self.plan.entries - self.appended) as u64;
        let end = self.started_at + self.plan.fault_phase_ms;
        let room = end.saturating_sub(self.now());
        let mean = (room / (left + 1)).max(1);
        let delay = self.rng.range(0, mean * 2);
        self.schedule(self.now() + delay, Event::Append);
    }
}
