//! Monotonic milliseconds: the time deadlines are measured in.
//!
//! Wall time ([`UnixMillis`](crate::UnixMillis)) can step (NTP, a VM resumed), and a step
//! would fire every deadline at once or none for hours. A machine whose deadlines need not
//! mean a wall-clock instant takes this instead; the shell counts it from an origin of its
//! own choosing (its start).

/// Milliseconds since an origin the shell chose; only differences mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoMillis(pub u64);

impl MonoMillis {
    pub const fn plus(self, ms: u64) -> MonoMillis {
        MonoMillis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, 0 when `earlier` is later.
    pub const fn since(self, earlier: MonoMillis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Both clocks, read together as an input arrives: the monotonic one for deadlines, the
/// wall one for the rules that mean a wall-clock instant (a fix "in the future", the time
/// a position was received).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: MonoMillis,
    pub wall: crate::UnixMillis,
}
