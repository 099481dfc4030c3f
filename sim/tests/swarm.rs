//! The durable writer under the swarm: many seeds, faults then healing, every invariant
//! checked on every run. Replay a failure with the command its message prints.
//! `SIM_DEFECT=ack-on-write-issue` (see `sim::defect`) plants a defect to watch it caught.

use sim::defect::Defect;
use sim::finding::FindingKind;
use sim::report::RunReport;
use sim::seeds::{replay_command, run_all, seeds, CI_SEEDS};
use sim::swarm::{run, RunOptions};

fn options() -> RunOptions {
    RunOptions {
        defect: Defect::from_env(),
        ..RunOptions::default()
    }
}

fn failure_report(report: &RunReport, test: &str) -> String {
    // Replay the seed keeping the end of the trace: the run is deterministic, so it is the
    // same run.
    let again = run(
        report.seed,
        &RunOptions {
            trace_keep: 40,
            halt_at_violation: true,
            ..options()
        },
    );
    format!(
        "{}\n  trace up to the first violation:\n    {}\n  replay: {}",
        report.summary(),
        again.trace_tail.join("\n    "),
        replay_command(report.seed, test)
    )
}

/// Each path the swarm must have taken, with how many seeds took it.
fn coverage(reports: &[RunReport]) -> Vec<(&'static str, usize)> {
    type Probe = fn(&RunReport) -> bool;
    let probes: [(&str, Probe); 19] = [
        ("instance crashed", |r| r.world.crashes > 0),
        ("clean exit mid-run", |r| {
            r.world.clean_exits > r.plan.instances as u64
        }),
        ("command ran after its instance crashed", |r| {
            r.world.orphan_commands > 0
        }),
        ("crashed instance's entries settled", |r| {
            r.checker.orphans_settled > 0
        }),
        ("entries claimed", |r| r.world.claimed_entries > 0),
        ("claim reported deleted ids", |r| {
            r.world.claimed_deleted > 0
        }),
        ("pending entries read again", |r| {
            r.world.pending_redeliveries > 0
        }),
        ("entries deleted", |r| r.checker.deleted > 0),
        ("undecodable entries", |r| r.checker.decode_errors > 0),
        ("refused rows dead-lettered", |r| {
            r.checker.refused_dead_lettered > 0
        }),
        ("duplicate keys appended", |r| r.checker.duplicate_keys > 0),
        ("conflicting rows committed", |r| {
            r.checker.committed_rows > r.checker.inserted_rows
        }),
        ("faulty rows stored", |r| r.checker.faulty_inserted > 0),
        ("transient write failures", |r| r.world.transient_writes > 0),
        ("commit answer lost", |r| r.world.commits_answer_lost > 0),
        ("statements rejected", |r| r.world.rejected_writes > 0),
        ("dead-letter batch partly written", |r| {
            r.world.partial_dead_letters > 0
        }),
        ("several instances", |r| r.plan.instances > 1),
        ("rejected row index reported", |r| {
            r.plan.report_row_index && r.world.rejected_writes > 0
        }),
    ];
    probes
        .iter()
        .map(|(name, probe)| (*name, reports.iter().filter(|r| probe(r)).count()))
        .collect()
}

#[test]
fn durable_swarm() {
    let seeds = seeds(CI_SEEDS);
    let reports = run_all(&seeds, &options());
    if seeds.len() == 1 {
        eprintln!("{}", reports[0].summary());
    }
    let covered = coverage(&reports);
    for (name, n) in &covered {
        eprintln!("coverage: {n:>4} of {} seeds: {name}", seeds.len());
    }
    if seeds.len() >= CI_SEEDS {
        let missed: Vec<&str> = covered
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(name, _)| *name)
            .collect();
        assert!(
            missed.is_empty(),
            "no seed of {} exercised: {missed:?}",
            seeds.len()
        );
    }
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.ok()).collect();
    // The first few in full; the seeds of all.
    let shown: Vec<String> = failed
        .iter()
        .take(3)
        .map(|r| failure_report(r, "durable_swarm"))
        .collect();
    let all: Vec<String> = failed.iter().map(|r| r.seed.to_string()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} seeds broke an invariant: {}\n{}",
        failed.len(),
        seeds.len(),
        all.join(" "),
        shown.join("\n")
    );
    // Contract rules the checker reports as findings rather than violations: refused rows
    // are dead-lettered with their payload, a clean exit leaves nothing pending, and a
    // writer never holds more than `max_held`.
    for kind in [
        FindingKind::DeadLetterWithoutOriginal,
        FindingKind::PendingAfterCleanExit,
        FindingKind::HeldOverBound,
    ] {
        let hits: Vec<String> = reports
            .iter()
            .filter_map(|r| {
                r.findings
                    .get(&kind)
                    .map(|(_, f)| format!("SIM_SEED={} ({f})", r.seed))
            })
            .collect();
        assert!(
            hits.is_empty(),
            "{kind:?} in {} seeds: {}",
            hits.len(),
            hits.join("; ")
        );
    }
}

#[test]
fn same_seed_same_trace() {
    let seeds = seeds(3);
    for seed in seeds.into_iter().take(3) {
        let a = run(seed, &RunOptions::default());
        let b = run(
            seed,
            &RunOptions {
                trace_keep: 10,
                ..RunOptions::default()
            },
        );
        assert!(a.trace_records > 100, "seed {seed}: a trivial run");
        assert_eq!(
            (a.trace_hash, a.trace_records, a.events),
            (b.trace_hash, b.trace_records, b.events),
            "seed {seed} is not deterministic; replay: {}",
            replay_command(seed, "same_seed_same_trace")
        );
    }
}

#[test]
fn different_seeds_different_traces() {
    let a = run(1, &RunOptions::default());
    let b = run(2, &RunOptions::default());
    assert_ne!(a.trace_hash, b.trace_hash);
}
