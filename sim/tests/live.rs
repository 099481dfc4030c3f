//! The live hub's model layer: every CI seed keeps every invariant, a seed replays to the
//! same trace, and each planted defect is caught within the CI seed budget.

use sim::live::{
    run_live, run_live_all, LiveDefect, LiveOptions, LiveViolationKind, LIVE_CI_SEEDS,
};
use sim::seeds::{assert_none_broken, replay_command, seeds, Broken};

#[test]
fn live_invariants_hold_for_every_seed() {
    let options = LiveOptions {
        defect: std::env::var("SIM_LIVE_DEFECT")
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|e: String| panic!("SIM_LIVE_DEFECT: {e}"))
            })
            .unwrap_or_default(),
        trace_keep: 0,
    };
    let reports = run_live_all(&seeds(LIVE_CI_SEEDS), &options);
    let failed: Vec<_> = reports.iter().filter(|r| !r.ok()).collect();
    let frames: u64 = reports.iter().map(|r| r.frames).sum();
    let slow_closes: u64 = reports.iter().map(|r| r.slow_closes).sum();
    let conflated: u64 = reports.iter().map(|r| r.stats.conflated_messages).sum();
    eprintln!(
        "{} seeds: {frames} frames read, {conflated} positions conflated, {slow_closes} slow consumers closed",
        reports.len()
    );
    let broken: Vec<_> = failed
        .iter()
        .map(|r| Broken {
            seed: r.seed,
            faults: &[],
            violations: &r.violations,
        })
        .collect();
    assert_none_broken(
        reports.len(),
        &broken,
        "live_invariants_hold_for_every_seed",
        10,
    );
    // The runs exercise what they claim to: slow clients conflated and closed.
    assert!(frames > 0 && conflated > 0 && slow_closes > 0);
}

#[test]
fn a_live_seed_replays_to_the_same_trace() {
    let seed = seeds(1)[0];
    let a = run_live(seed, &LiveOptions::default());
    let b = run_live(seed, &LiveOptions::default());
    assert_eq!(
        a.trace_hash, b.trace_hash,
        "seed {seed} is not deterministic"
    );
    let other = run_live(seed ^ 1, &LiveOptions::default());
    assert_ne!(a.trace_hash, other.trace_hash, "the trace ignores the seed");
}

fn catches(test: &str, defect: LiveDefect, kind: LiveViolationKind) {
    let options = LiveOptions {
        defect,
        trace_keep: 0,
    };
    let all = seeds(LIVE_CI_SEEDS);
    let reports = run_live_all(&all, &options);
    let caught: Vec<_> = reports
        .iter()
        .filter(|r| r.violations.iter().any(|v| v.kind == kind))
        .collect();
    let first = caught.first().unwrap_or_else(|| {
        panic!(
            "{defect:?} went unnoticed in {} seeds: no teeth for {kind:?}",
            all.len()
        )
    });
    eprintln!(
        "{defect:?}: {kind:?} reported in {} of {} seeds; first: {}\n  replay: {}",
        caught.len(),
        all.len(),
        first
            .violations
            .iter()
            .find(|v| v.kind == kind)
            .map_or(String::new(), |v| v.to_string()),
        replay_command(first.seed, test)
    );
}

#[test]
fn teeth_snapshot_not_held_back() {
    catches(
        "teeth_snapshot_not_held_back",
        LiveDefect::SnapshotNotHeldBack,
        LiveViolationKind::PositionBeforeSnapshot,
    );
}

#[test]
fn teeth_order_not_enforced() {
    catches(
        "teeth_order_not_enforced",
        LiveDefect::OrderNotEnforced,
        LiveViolationKind::Backwards,
    );
}

#[test]
fn teeth_unbounded_queue() {
    catches(
        "teeth_unbounded_queue",
        LiveDefect::UnboundedQueue,
        LiveViolationKind::QueueUnbounded,
    );
}
