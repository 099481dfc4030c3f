//! One processor instance: a consumer name, a writer, and the instance's own clock.

use processor_core::{MonoMillis, Now, UnixMillis};

use crate::defect::SimWriter;

/// A running instance. Dropping it is a crash: whatever it held is simply gone.
#[derive(Debug)]
pub struct Instance {
    /// Its consumer name in the durable group.
    pub consumer: String,
    /// Distinguishes this start from earlier ones in the same slot; answers addressed to an
    /// earlier incarnation are lost.
    pub incarnation: u64,
    pub writer: SimWriter,
    /// The instance's clock minus the servers' clock.
    pub skew_ms: i64,
    /// Shutdown was asked for.
    pub stopping: bool,
}

impl Instance {
    /// The instance's clocks at simulated (server) time `sim_now`: its monotonic clock runs
    /// with simulated time, its wall clock is off by `skew_ms` (which may step).
    pub fn now(&self, sim_now: u64) -> Now {
        Now {
            mono: MonoMillis(sim_now),
            wall: UnixMillis((sim_now as i64).saturating_add(self.skew_ms)),
        }
    }

    /// When the writer wants its timer, in simulated time.
    pub fn deadline(&self) -> Option<u64> {
        self.writer.poll_timeout().map(|t| t.0)
    }
}
