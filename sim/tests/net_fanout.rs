//! The network layer's live path: two whole instances, WebSocket clients over simulated
//! TCP, faults on the wire and the hosts; every invariant of `sim::net::fanout` holds and a
//! seed replays to the same trace.
//!
//! One test, for the reason `net.rs` gives: a run is exactly reproducible when it runs
//! alone in its process, so the replay check comes before the parallel seeds.

use sim::net::fanout::{run_fanout, run_fanout_with, CALM_LATENCY_BOUND_MS};
use sim::net::instance::NetLiveDefect;
use sim::net::FANOUT_CI_SEEDS;
use sim::seeds::{assert_none_broken, assert_replays, run_parallel, seeds, Broken};

#[test]
fn live_path_over_the_network_replays_and_keeps_every_invariant() {
    let all = seeds(FANOUT_CI_SEEDS);
    assert_replays(all[0], run_fanout, |r| (r.trace_hash, r.sim_ms));

    let reports = run_parallel(&all, run_fanout);
    for r in &reports {
        eprintln!(
            "seed {}: {} entries, {} frames in {} sessions, {} conflated, calm latency at most {} ms, p1 stopped at {:?} ms, {} ms simulated",
            r.seed, r.entries, r.frames, r.sessions, r.conflated, r.calm_latency_max_ms, r.stopped_at, r.sim_ms
        );
    }
    let broken: Vec<_> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| Broken {
            seed: r.seed,
            faults: &r.faults,
            violations: &r.violations,
        })
        .collect();
    assert_none_broken(reports.len(), &broken, "live_path_over_the_network", 15);
    // The runs did what they are for: frames flowed and the bound held; over a series (not a
    // single replayed seed), slow clients were conflated.
    assert!(reports.iter().all(|r| r.frames > 0));
    assert!(reports
        .iter()
        .all(|r| r.calm_latency_max_ms <= CALM_LATENCY_BOUND_MS));
    if reports.len() >= 10 {
        assert!(
            reports.iter().any(|r| r.conflated > 0),
            "no slow client was ever conflated"
        );
        assert!(
            reports.iter().any(|r| r.stopped_at.is_some()),
            "no instance was ever asked to stop"
        );
    }

    // Teeth, planted in the sim's wiring of an instance (never in the shell), over the
    // first seeds of a series: an instance whose heartbeat goes stale loses its group to
    // the other's sweep, and with it positions its fast clients were owed.
    if all.len() >= 10 {
        let tried = &all[..10];
        let caught = run_parallel(tried, |seed| {
            run_fanout_with(seed, NetLiveDefect::StaleHeartbeat)
        })
        .into_iter()
        .filter(|r| {
            r.violations
                .iter()
                .any(|v| v.contains("never got") || v.contains("was swept"))
        })
        .count();
        eprintln!(
            "stale heartbeat: caught in {caught} of {} seeds",
            tried.len()
        );
        assert!(caught > 0, "a stale heartbeat went unnoticed");
    }
}
