//! Replays the fuzz seed corpora and any committed fuzz artifacts on stable, in `cargo test`.
//!
//! Every file under `fuzz/corpus/` and `fuzz/artifacts/` goes through every target's check
//! (position decoder, client-message parser, client-frame reader, Teltonika gateway
//! session), the same checks the fuzz targets apply (`fuzz/src/lib.rs`). A crash the fuzzer
//! finds later becomes a regression test by committing its input under `fuzz/corpus/<target>/` (or, forced, under `fuzz/artifacts/`).
//!
//! Seed names carry their expected outcome for their own target: `valid_*` must be accepted
//! and `invalid_*` rejected, so the seeds keep covering both sides of each parser.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every regular file below `dir`, recursively, sorted; empty when `dir` does not exist.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let files = files_below(&fuzz_dir().join("corpus").join(target));
    assert!(
        !files.is_empty(),
        "the seed corpus fuzz/corpus/{target} is empty or missing"
    );
    files
}

/// A check: panics when its input breaks a rule.
type Check = fn(&[u8]);

const CHECKS: [(&str, Check); 4] = [
    ("decode_position", checks::check_decode_position),
    ("client_message", checks::check_client_message),
    ("client_frames", checks::check_client_frames),
    ("teltonika_frames", checks::check_teltonika),
];

/// Runs every check on every file; returns one line per file that panicked.
fn replay(files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for path in files {
        let data = std::fs::read(path).expect("readable corpus file");
        for (name, check) in CHECKS {
            if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(format!("{name} panicked on {}", path.display()));
            }
        }
    }
    failures
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seed_corpora_never_panic() {
    let mut files = corpus("decode_position");
    files.extend(corpus("client_message"));
    files.extend(corpus("client_frames"));
    files.extend(corpus("teltonika_frames"));
    assert_no_failures(replay(&files));
}

#[test]
fn fuzz_artifacts_never_panic() {
    // Absent unless a fuzz run found something (or a regression input was committed).
    assert_no_failures(replay(&files_below(&fuzz_dir().join("artifacts"))));
}

/// `valid_*` / `invalid_*` seeds of one target, checked against `accepts`.
fn check_seed_names(target: &str, accepts: fn(&[u8]) -> bool) {
    let mut wrong = Vec::new();
    for path in corpus(target) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let expected = if name.starts_with("valid_") {
            true
        } else if name.starts_with("invalid_") {
            false
        } else {
            continue; // e.g. an input minimised from a crash, kept under its hash
        };
        let data = std::fs::read(&path).expect("readable corpus file");
        if accepts(&data) != expected {
            wrong.push(format!(
                "{}: expected {}",
                path.display(),
                if expected { "Ok" } else { "Err" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn decode_position_seeds_match_their_names() {
    check_seed_names("decode_position", |d| {
        processor_core::decode_position(d).is_ok()
    });
}

#[test]
fn client_message_seeds_match_their_names() {
    check_seed_names("client_message", |d| {
        processor_core::wire::parse_client_message(d).is_ok()
    });
}

#[test]
fn client_frames_seeds_match_their_names() {
    // Valid: every byte makes frames and no error; invalid: the bytes end on a close code.
    check_seed_names("client_frames", |d| {
        let frames = checks::read_client_frames(d);
        !frames.is_empty() && frames.iter().all(Result::is_ok)
    });
}

#[test]
fn teltonika_frames_seeds_match_their_names() {
    // Valid: the session acknowledges at least one packet and stays open; invalid: it closes.
    check_seed_names("teltonika_frames", |d| {
        let (replies, closed) = checks::run_teltonika_session(&[d]);
        closed.is_none()
            && replies
                .iter()
                .any(|r| matches!(r, processor_core::teltonika::session::Reply::Ack(_)))
    });
}
