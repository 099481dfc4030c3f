//! Which devices belong to which events: the `entry_devices` join, refreshed as a whole.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// One version of the device-to-event map, indexed both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeviceMap {
    version: Option<u64>,
    by_device: BTreeMap<String, BTreeSet<Uuid>>,
    by_event: BTreeMap<Uuid, BTreeSet<String>>,
}

impl DeviceMap {
    /// The map of `version`. Devices with no event are left out: they are orphans.
    pub(crate) fn new(version: u64, by_device: BTreeMap<String, BTreeSet<Uuid>>) -> DeviceMap {
        let mut by_event: BTreeMap<Uuid, BTreeSet<String>> = BTreeMap::new();
        let by_device: BTreeMap<String, BTreeSet<Uuid>> = by_device
            .into_iter()
            .filter(|(_, events)| !events.is_empty())
            .collect();
        for (device, events) in &by_device {
            for event in events {
                by_event.entry(*event).or_default().insert(device.clone());
            }
        }
        DeviceMap {
            version: Some(version),
            by_device,
            by_event,
        }
    }

    /// The version of this map; `None` before the first one arrived.
    pub(crate) fn version(&self) -> Option<u64> {
        self.version
    }

    /// The events `device` belongs to, in UUID order; `None` for an orphan.
    pub(crate) fn events_of(&self, device: &str) -> Option<&BTreeSet<Uuid>> {
        self.by_device.get(device)
    }

    /// The devices of `event`, in order.
    pub(crate) fn devices_of(&self, event: Uuid) -> impl Iterator<Item = &str> {
        self.by_event
            .get(&event)
            .into_iter()
            .flat_map(|devices| devices.iter().map(String::as_str))
    }
}
