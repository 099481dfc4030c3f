//! The recent track of each device, as the live path accepted it.
//!
//! A snapshot reads Postgres, and Postgres lags the live path by the durable path's batch
//! and commit time: a position accepted live a moment ago may not be stored yet. The last
//! few accepted fixes per device fill that gap, so that a trail or a resume joins the live
//! positions that follow without a hole. Only the tail is kept (the durable lag is seconds,
//! not minutes): memory is bounded by the devices of the device map times
//! [`RECENT_POINTS`], and older history is Postgres's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::ordering::Fix;

/// Fixes kept per device: two minutes of a device reporting every second, far more than
/// the durable path's lag (a batch is committed within a second when Postgres is healthy).
pub(crate) const RECENT_POINTS: usize = 128;

#[derive(Debug, Default)]
pub(crate) struct RecentTracks {
    devices: BTreeMap<Arc<str>, VecDeque<Fix>>,
}

impl RecentTracks {
    /// Appends an accepted fix; the live path accepts a device's fixes in `ts` order.
    pub(crate) fn push(&mut self, device: &Arc<str>, fix: Fix) {
        let track = match self.devices.get_mut(device) {
            Some(track) => track,
            None => self.devices.entry(Arc::clone(device)).or_default(),
        };
        if track.len() >= RECENT_POINTS {
            track.pop_front();
        }
        track.push_back(fix);
    }

    /// The device's recent fixes, oldest first.
    pub(crate) fn track(&self, device: &str) -> impl Iterator<Item = Fix> + '_ {
        self.devices
            .get(device)
            .into_iter()
            .flat_map(|t| t.iter().copied())
    }
}
