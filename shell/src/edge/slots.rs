//! The cap on open WebSockets (`LIVE_WS_MAX_CONNECTIONS`): a slot is taken before the
//! upgrade and given back when the connection's socket is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct ConnectionSlots {
    open: Arc<AtomicUsize>,
    cap: usize,
}

/// One open WebSocket; the slot is free again when this is dropped.
pub struct Slot {
    open: Arc<AtomicUsize>,
}

impl ConnectionSlots {
    pub fn new(cap: usize) -> ConnectionSlots {
        ConnectionSlots {
            open: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    /// A slot, or `None` when `cap` WebSockets are open.
    pub fn take(&self) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                open: self.open.clone(),
            })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back() {
        let slots = ConnectionSlots::new(2);
        let a = slots.take();
        let b = slots.take();
        assert!(a.is_some() && b.is_some());
        assert!(slots.take().is_none());
        drop(a);
        assert_eq!(slots.open(), 1);
        assert!(slots.take().is_some());
    }
}
