//! The network layer: the shell's durable loop on turmoil hosts keeps every invariant under
//! partitions, crashes and clock skew, and a seed replays to the same trace.
//!
//! One test, so that the replay check never runs beside other simulations in this process:
//! tokio numbers tasks process-wide, and a crashed host's tasks are dropped in that order,
//! so a run is exactly reproducible when it runs alone (as `SIM_SEED=...` replays do).

use sim::net::{run_net, run_net_with, NET_CI_SEEDS};
use sim::seeds::{assert_none_broken, assert_replays, run_parallel, seeds, Broken};

#[test]
fn network_layer_replays_and_keeps_every_invariant() {
    let all = seeds(NET_CI_SEEDS);
    assert_replays(all[0], run_net, |r| (r.trace_hash, r.sim_ms));

    let reports = run_parallel(&all, run_net);
    for r in &reports {
        eprintln!(
            "seed {}: {} entries, {} rows stored, {} dead letters, {} ms simulated",
            r.seed, r.entries, r.stored, r.dead_lettered, r.sim_ms
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
    assert_none_broken(reports.len(), &broken, "network_layer", 10);
    assert!(reports.iter().all(|r| r.stored > 0 && r.dead_lettered > 0));

    // Teeth: a processor that acks what it reads before storing it is caught.
    let tried = &all[..all.len().min(10)];
    let caught = run_parallel(tried, |seed| run_net_with(seed, true))
        .into_iter()
        .filter(|r| r.violations.iter().any(|v| v.contains("acked before")))
        .count();
    eprintln!("ack on read: caught in {caught} of {} seeds", tried.len());
    assert!(caught > 0, "acking before storing went unnoticed");
}
