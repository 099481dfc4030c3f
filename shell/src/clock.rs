//! The wall clock, read here and handed to the core as input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use processor_core::UnixMillis;

/// Now, as the core's time type.
pub fn now() -> UnixMillis {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    UnixMillis(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The wall clock, as the core takes it: the system's in the service, simulated time (maybe
/// skewed) in the simulation. Deadlines run on [`MonoClock`] instead.
pub trait Clock: Clone + Send + Sync + 'static {
    fn now(&self) -> UnixMillis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        now()
    }
}

/// Monotonic time as the core takes it for deadlines: milliseconds since this clock was
/// made. tokio's clock, so that it is simulated time under turmoil.
#[derive(Debug, Clone, Copy)]
pub struct MonoClock {
    origin: tokio::time::Instant,
}

impl MonoClock {
    pub fn start() -> MonoClock {
        MonoClock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> processor_core::MonoMillis {
        let ms = self.origin.elapsed().as_millis();
        processor_core::MonoMillis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The instant a core deadline names, to sleep until.
    pub fn instant(&self, at: processor_core::MonoMillis) -> tokio::time::Instant {
        self.origin + Duration::from_millis(at.0)
    }
}
