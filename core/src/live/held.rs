//! Position messages held while a subscription's snapshot loads.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::websocket::Frame;
use crate::UnixMillis;

/// A position message held while its subscription's snapshot loads.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub ts: UnixMillis,
    pub frame: Frame,
}

/// The positions that arrived while one snapshot loaded.
///
/// A plain subscription only needs the newest per device (the snapshot is the newest per
/// device too). A subscription with history (a trail or a resume) keeps every one, so that
/// the track it shows has no hole, up to `cap`; past it, a device's newest replaces its
/// last one and the hold is marked overflowed (a resume then cannot be complete).
#[derive(Debug)]
pub(crate) struct HeldPositions {
    by_device: BTreeMap<Arc<str>, Vec<Held>>,
    keep_all: bool,
    cap: usize,
    len: usize,
    overflowed: bool,
}

impl HeldPositions {
    pub(crate) fn newest_only() -> HeldPositions {
        HeldPositions::every(0, false)
    }

    /// Every position up to `cap` when `keep_all`, else the newest per device.
    pub(crate) fn every(cap: usize, keep_all: bool) -> HeldPositions {
        HeldPositions {
            by_device: BTreeMap::new(),
            keep_all,
            cap,
            len: 0,
            overflowed: false,
        }
    }

    /// Holds one position; true when it replaced (conflated) one held before.
    pub(crate) fn hold(&mut self, device: &Arc<str>, held: Held) -> bool {
        let room = self.keep_all && self.len < self.cap;
        let track = match self.by_device.get_mut(device) {
            Some(track) => track,
            None => self.by_device.entry(Arc::clone(device)).or_default(),
        };
        if room || track.is_empty() {
            track.push(held);
            self.len += 1;
            return false;
        }
        if self.keep_all {
            self.overflowed = true;
        }
        if let Some(last) = track.last_mut() {
            *last = held;
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Per device (in device order), its positions in arrival (so `ts`) order.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = (Arc<str>, Held)> {
        self.by_device
            .into_iter()
            .flat_map(|(device, track)| track.into_iter().map(move |h| (Arc::clone(&device), h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(ts: i64) -> Held {
        Held {
            ts: UnixMillis(ts),
            frame: Frame::ping(),
        }
    }

    fn times(h: HeldPositions) -> Vec<(String, i64)> {
        h.into_iter()
            .map(|(d, h)| (d.to_string(), h.ts.as_i64()))
            .collect()
    }

    #[test]
    fn without_history_only_the_newest_per_device_is_held() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut h = HeldPositions::every(10, false);
        assert!(!h.hold(&a, held(1)));
        assert!(h.hold(&a, held(2)), "replaces");
        assert!(!h.hold(&b, held(3)));
        assert_eq!((h.len(), h.overflowed()), (2, false));
        assert_eq!(times(h), [("a".into(), 2), ("b".into(), 3)]);
    }

    #[test]
    fn with_history_every_position_is_held_up_to_the_cap_then_the_newest_replaces() {
        let a: Arc<str> = "a".into();
        let mut h = HeldPositions::every(2, true);
        assert!(!h.hold(&a, held(1)));
        assert!(!h.hold(&a, held(2)));
        assert!(!h.overflowed());
        assert!(h.hold(&a, held(3)), "past the cap: replaces the last");
        assert_eq!((h.len(), h.overflowed()), (2, true));
        assert_eq!(times(h), [("a".into(), 1), ("a".into(), 3)]);
    }
}
