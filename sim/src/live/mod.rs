//! The live path's model layer: the real [`processor_core::live::LiveHub`], unchanged,
//! driven through seeded runs against in-memory stand-ins (a stream of positions, a lagging
//! positions store, an events table, clients with bounded or stalled sockets), with every
//! frame a client reads judged as it arrives ([`checker`]) and the rest judged against a
//! reference model ([`driver`]). Planted defects ([`defect`]) show the judging has teeth.

pub mod checker;
pub mod defect;
pub mod driver;

pub use checker::{LiveViolation, LiveViolationKind};
pub use defect::LiveDefect;
pub use driver::{run_live, LiveOptions, LiveReport, QUEUE_SLACK};

/// Seeds a plain `cargo test -p sim` runs through the live model.
pub const LIVE_CI_SEEDS: usize = 300;

/// Runs every seed, spread over the machine's cores; reports come back in seed order.
pub fn run_live_all(seeds: &[u64], options: &LiveOptions) -> Vec<LiveReport> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len().max(1));
    let mut slots: Vec<Option<LiveReport>> = vec![None; seeds.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    seeds
                        .iter()
                        .enumerate()
                        .skip(w)
                        .step_by(workers)
                        .map(|(i, seed)| (i, run_live(*seed, options)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (i, report) in handle.join().expect("a simulation thread panicked") {
                slots[i] = Some(report);
            }
        }
    });
    slots.into_iter().flatten().collect()
}
