//! State-machine property test of the whole durable path: proptest generates a script of
//! operations (appends, one command step at a time with or without a fault, timers, clock
//! steps, crashes with or without the wire, restarts under old or new names, deletions,
//! shutdowns) and applies it to a [`World`]; the world is then healed by the swarm driver
//! without faults. A reference model, computed from the script alone, says what must be
//! stored and what must be dead-lettered; the checker's invariants must hold as well.
//! Failing scripts shrink, and are kept under `sim/proptest-regressions/`.

use std::collections::{BTreeMap, BTreeSet};

use processor_core::durable::DurableConfig;
use processor_core::faulty::FaultyThresholds;
use processor_core::stream::EntryId;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sim::defect::Defect;
use sim::faults::FaultPlan;
use sim::op::{OpFault, OpId};
use sim::store::PositionKey;
use sim::swarm::settle;
use sim::traffic::{
    decode_error_entry, device, marker_device, position_entry, Truth, DECODE_ERRORS, T0,
};
use sim::world::World;

const SLOTS: usize = 2;

#[derive(Debug, Clone)]
enum Kind {
    Good {
        device: u8,
        slot: u8,
        speed: u16,
        satellites: u8,
    },
    Refused {
        slot: u8,
    },
    Undecodable(u8),
}

#[derive(Debug, Clone)]
enum Step {
    Append(Kind),
    /// Runs the next step of the command at this index (modulo those in flight).
    Execute {
        pick: usize,
        fault: u8,
    },
    Timeout(u8),
    Advance(u16),
    Crash {
        slot: u8,
        keep: bool,
    },
    Start {
        slot: u8,
        fresh_name: bool,
    },
    Delete(usize),
    Shutdown(u8),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => (0..3u8, 0..4u8, 0..2_000u16, 0..12u8).prop_map(|(device, slot, speed, satellites)| {
            Kind::Good { device, slot, speed, satellites }
        }),
        1 => (0..3u8).prop_map(|slot| Kind::Refused { slot }),
        1 => any::<u8>().prop_map(Kind::Undecodable),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => kind().prop_map(Step::Append),
        12 => (any::<usize>(), 0..9u8).prop_map(|(pick, fault)| Step::Execute { pick, fault }),
        2 => (0..SLOTS as u8).prop_map(Step::Timeout),
        2 => prop_oneof![1..50u16, 50..3_000u16].prop_map(Step::Advance),
        1 => (0..SLOTS as u8, any::<bool>()).prop_map(|(slot, keep)| Step::Crash { slot, keep }),
        1 => (0..SLOTS as u8, any::<bool>()).prop_map(|(slot, fresh_name)| Step::Start { slot, fresh_name }),
        1 => any::<usize>().prop_map(Step::Delete),
        1 => (0..SLOTS as u8).prop_map(Step::Shutdown),
    ]
}

fn config() -> impl Strategy<Value = DurableConfig> {
    (
        1..5usize,
        1..3usize,
        1..4u64,
        200..2_000u64,
        100..1_000u64,
        10..100u64,
        100..1_000u64,
    )
        .prop_map(
            |(
                batch_size,
                max_in_flight,
                max_deliveries,
                claim_idle_ms,
                claim_interval_ms,
                retry_min_ms,
                retry_max_ms,
            )| {
                DurableConfig {
                    batch_size,
                    max_in_flight,
                    max_deliveries,
                    claim_idle_ms,
                    claim_interval_ms,
                    retry_min_ms,
                    retry_max_ms,
                    faulty: FaultyThresholds {
                        min_satellites: 3,
                        max_future_ms: 30_000,
                        min_timestamp: processor_core::UnixMillis(i64::MIN),
                    },
                }
            },
        )
}

fn truth(device_id: String, slot: u8, speed: u16, satellites: u8) -> Truth {
    Truth {
        device_id,
        ts: (T0 - 60_000) as i64 + i64::from(slot) * 20_000,
        latitude: 54.0 + f64::from(speed % 100) / 100.0,
        longitude: 25.0,
        speed: f64::from(speed) / 10.0,
        angle: 0.0,
        satellites,
        attributes: BTreeMap::new(),
    }
}

/// What the script says must come out, whatever the interleaving.
#[derive(Debug, Default)]
struct Reference {
    storable: BTreeMap<PositionKey, Vec<(EntryId, Truth)>>,
    must_dead_letter: BTreeSet<EntryId>,
    deleted: BTreeSet<EntryId>,
    appended: Vec<EntryId>,
}

impl Reference {
    fn required_keys(&self) -> BTreeSet<PositionKey> {
        self.storable
            .iter()
            .filter(|(_, list)| list.iter().any(|(id, _)| !self.deleted.contains(id)))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

fn apply(
    world: &mut World,
    reference: &mut Reference,
    names: &mut [String],
    next_name: &mut u32,
    step: &Step,
) {
    match step {
        Step::Append(kind) => {
            let (entry, storable) = match kind {
                Kind::Good {
                    device: d,
                    slot,
                    speed,
                    satellites,
                } => {
                    let t = truth(device(usize::from(*d)), *slot, *speed, *satellites);
                    (
                        position_entry(&t, if speed % 5 == 0 { Some(60) } else { None }, false),
                        Some(t),
                    )
                }
                Kind::Refused { slot } => (
                    position_entry(&truth(marker_device(0), *slot, 1, 9), None, false),
                    None,
                ),
                Kind::Undecodable(k) => {
                    let kind = DECODE_ERRORS[usize::from(*k) % DECODE_ERRORS.len()];
                    (decode_error_entry(kind, &truth(device(0), 0, 0, 9)), None)
                }
            };
            let id = world.append(entry);
            reference.appended.push(id);
            match storable {
                Some(t) => reference.storable.entry(t.key()).or_default().push((id, t)),
                None => {
                    reference.must_dead_letter.insert(id);
                }
            }
        }
        Step::Execute { pick, fault } => {
            let ids: Vec<OpId> = world.ops().keys().copied().collect();
            if !ids.is_empty() {
                let fault = match fault {
                    6 => OpFault::Before,
                    7 => OpFault::After,
                    8 => OpFault::Partial(1),
                    _ => OpFault::None,
                };
                world.execute(ids[pick % ids.len()], fault);
            }
        }
        Step::Timeout(slot) => {
            world.timeout(usize::from(*slot));
        }
        Step::Advance(ms) => world.advance_to(world.now() + u64::from(*ms)),
        Step::Crash { slot, keep } => world.crash(usize::from(*slot), &mut |_, _| *keep),
        Step::Start { slot, fresh_name } => {
            let slot = usize::from(*slot);
            if world.instance(slot).is_none() {
                if *fresh_name || names[slot].is_empty() {
                    names[slot] = format!("script-{next_name}");
                    *next_name += 1;
                }
                world.start(slot, names[slot].clone(), 0);
            }
        }
        Step::Delete(i) => {
            if !reference.appended.is_empty() {
                let id = reference.appended[i % reference.appended.len()];
                if world.delete(id) {
                    reference.deleted.insert(id);
                }
            }
        }
        Step::Shutdown(slot) => world.shutdown(usize::from(*slot)),
    }
    world.reap();
    world.take_fresh();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/world_model.txt"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn scripted_world_stores_what_the_reference_says(
        config in config(),
        steps in prop::collection::vec(step(), 1..160),
    ) {
        let mut world = World::new(config.clone(), SLOTS, Defect::None, false, 0);
        let mut reference = Reference::default();
        let mut names = vec![String::new(); SLOTS];
        let mut next_name = 0;
        apply(&mut world, &mut reference, &mut names, &mut next_name, &Step::Start { slot: 0, fresh_name: true });
        for step in &steps {
            apply(&mut world, &mut reference, &mut names, &mut next_name, step);
        }
        let (report, world) = settle(world, FaultPlan::calm(config, SLOTS), 0, 500_000);
        prop_assert!(report.ok(), "{}", report.summary());

        let stored: BTreeSet<PositionKey> = world.store().rows().keys().cloned().collect();
        let required = reference.required_keys();
        prop_assert!(required.is_subset(&stored), "missing {:?}", required.difference(&stored).collect::<Vec<_>>());
        for (key, row) in world.store().rows() {
            let candidates = reference.storable.get(key);
            prop_assert!(candidates.is_some(), "stored {:?} was never appended", key);
            prop_assert!(
                candidates.into_iter().flatten().any(|(_, t)| t.matches(&row.position)),
                "stored {:?} matches none of its entries", key
            );
        }
        let dead: BTreeSet<EntryId> = world.dead_letter_stream().iter().map(|d| d.source_id).collect();
        for id in &reference.must_dead_letter {
            prop_assert!(dead.contains(id) || reference.deleted.contains(id), "{} not dead-lettered", id);
        }
        for list in reference.storable.values() {
            for (id, _) in list {
                prop_assert!(!dead.contains(id) || reference.deleted.contains(id), "storable {} dead-lettered", id);
            }
        }
        prop_assert!(world.stream().pending().is_empty());
    }
}
