//! The live hub's clocks in these tests: one timeline, its monotonic milliseconds equal to
//! the wall clock's (a test of a wall-clock step builds its `Now` itself).

use processor_core::{MonoMillis, Now, UnixMillis};

pub fn clocks(wall: UnixMillis) -> Now {
    Now {
        mono: MonoMillis(u64::try_from(wall.as_i64()).unwrap_or(0)),
        wall,
    }
}

/// A hub deadline, as the wall-clock instant it falls on in these tests.
#[allow(dead_code)] // not every test file reads deadlines
pub fn wall_of(deadline: MonoMillis) -> UnixMillis {
    UnixMillis(i64::try_from(deadline.0).unwrap_or(i64::MAX))
}
