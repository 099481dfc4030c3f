//! `loadgen`: clients that measure the processor from outside, over WebSockets and HTTP.
//!
//! - without a subcommand: C live-path clients over E events, measuring delivery and
//!   latency (`live.rs`; scripts/bench-live.sh);
//! - `trail`: the time from a `subscribe` with `trail_s` to its complete snapshot, N times
//!   (`trail.rs`);
//! - `replay`: R paced replays of an event's stored window, whether they keep pace
//!   (`replay.rs`);
//! - `export`: one track export read to the end, its rate (`export.rs`).
//!
//! The history subcommands serve scripts/bench-history.sh. Each prints one JSON line on
//! stdout; progress and errors go to stderr, and a failure exits non-zero naming what
//! failed.

mod export;
mod frame;
mod live;
mod quantiles;
mod replay;
mod socket;
mod trail;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "WebSocket and HTTP clients measuring the processor",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Without a subcommand: the live-path clients.
    #[command(flatten)]
    live: live::LiveArgs,
    #[command(subcommand)]
    history: Option<History>,
}

#[derive(Subcommand)]
enum History {
    /// Subscribe with a trail N times, one connection each; time each complete snapshot.
    Trail(trail::TrailArgs),
    /// Run paced replays of an event's window; report whether they keep pace.
    Replay(replay::ReplayArgs),
    /// Read one track export (GeoJSON) to the end; report points and bytes per second.
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.history {
            None => live::run(cli.live).await,
            Some(History::Trail(args)) => trail::run(args).await,
            Some(History::Replay(args)) => replay::run(args).await,
            Some(History::Export(args)) => export::run(args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
