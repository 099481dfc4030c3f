//! The checker has teeth: with a defect planted in the driver around the writer (never in
//! the core), runs from the CI seed series must report the matching violation.

use sim::checker::ViolationKind;
use sim::defect::Defect;
use sim::seeds::{replay_command, run_all, seeds, CI_SEEDS};
use sim::swarm::RunOptions;

/// Seeds tried first; the whole CI budget only if none of these catches the defect.
const FIRST: usize = 20;

fn catches(test: &str, defect: Defect, kind: ViolationKind) {
    let all = seeds(CI_SEEDS);
    let options = RunOptions {
        defect,
        ..RunOptions::default()
    };
    let mut tried = 0;
    let mut caught = Vec::new();
    for chunk in [&all[..FIRST.min(all.len())], &all[FIRST.min(all.len())..]] {
        if chunk.is_empty() || !caught.is_empty() {
            continue;
        }
        for report in run_all(chunk, &options) {
            tried += 1;
            if report.violations.iter().any(|v| v.kind == kind) {
                caught.push(report);
            }
        }
    }
    let first = caught.first().unwrap_or_else(|| {
        panic!("{defect:?} went unnoticed in {tried} seeds: the checker has no teeth for {kind:?}")
    });
    let example = first
        .violations
        .iter()
        .find(|v| v.kind == kind)
        .expect("caught");
    eprintln!(
        "{defect:?}: {kind:?} reported in {} of {tried} seeds; first: {example}\n  replay: {}",
        caught.len(),
        replay_command(first.seed, test)
    );
}

#[test]
fn teeth_ack_before_commit() {
    catches(
        "teeth_ack_before_commit",
        Defect::AckOnWriteIssue,
        ViolationKind::AckBeforeSettled,
    );
}

#[test]
fn teeth_ack_before_dead_letter() {
    catches(
        "teeth_ack_before_dead_letter",
        Defect::AckOnDeadLetterIssue,
        ViolationKind::AckBeforeSettled,
    );
}

#[test]
fn teeth_spinning_timer() {
    catches(
        "teeth_spinning_timer",
        Defect::SpinningTimer,
        ViolationKind::StaleDeadline,
    );
}
