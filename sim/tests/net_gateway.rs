//! Trackers, gateways and the durable path over the network: every record of every
//! acknowledged packet reaches the stream and Postgres exactly once, whatever happens to
//! the gateways and Redis, and a seed replays to the same trace.
//!
//! One test, for the reason `net.rs` gives: a run is exactly reproducible when it runs
//! alone in its process, so the replay check comes before the parallel seeds.

use sim::net::gateway::{run_gateway, run_gateway_with, GatewayDefect};
use sim::net::GATEWAY_CI_SEEDS;
use sim::seeds::{assert_none_broken, assert_replays, run_parallel, seeds, Broken};

#[test]
fn gateways_ack_only_what_is_on_the_stream_and_everything_is_stored_once() {
    let all = seeds(GATEWAY_CI_SEEDS);
    assert_replays(all[0], run_gateway, |r| (r.trace_hash, r.sim_ms));

    let reports = run_parallel(&all, run_gateway);
    for r in &reports {
        eprintln!(
            "seed {}: {} packets ({} records), {} resends, {} entries on the stream, {} ms simulated",
            r.seed, r.packets, r.records, r.resends, r.entries, r.sim_ms
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
    assert_none_broken(reports.len(), &broken, "gateway", 10);
    // The faults bite: some packets go unacknowledged and are resent.
    assert!(
        reports.iter().any(|r| r.resends > 0),
        "no run resent anything"
    );

    // Teeth: a gateway that acknowledges before Redis confirmed is caught.
    let tried = &all[..all.len().min(10)];
    let caught = run_parallel(tried, |seed| {
        run_gateway_with(seed, GatewayDefect::AckBeforeConfirmed)
    })
    .into_iter()
    .filter(|r| {
        r.violations
            .iter()
            .any(|v| v.contains("acknowledged packets"))
    })
    .count();
    eprintln!(
        "ack before confirmed: caught in {caught} of {} seeds",
        tried.len()
    );
    assert!(
        caught > 0,
        "acknowledging before Redis confirmed went unnoticed"
    );
}
