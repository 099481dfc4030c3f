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
