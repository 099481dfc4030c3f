//! Which devices belong to which events: the `entry_devices` join, refreshed as a whole.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// One version of the device-to-event map, indexed both ways. Built once per refresh by
/// the shell and shared (in an `Arc`) by the ingest and every hub shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceMap {
    version: Option<u64>,
    by_device: BTreeMap<String, BTreeSet<Uuid>>,
    by_event: BTreeMap<Uuid, BTreeSet<String>>,
}

impl DeviceMap {
    /// The map of `version`. Devices with no event are left out: they are orphans.
    pub fn new(version: u64, by_device: BTreeMap<String, BTreeSet<Uuid>>) -> DeviceMap {
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
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// True when `self` should replace `current`: a version not above the one in use is a
    /// refresh that finished late.
    pub(crate) fn supersedes(&self, current: &DeviceMap) -> bool {
        match (self.version, current.version) {
            (Some(new), Some(old)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The events `device` belongs to, in UUID order; `None` for an orphan.
    pub fn events_of(&self, device: &str) -> Option<&BTreeSet<Uuid>> {
        self.by_device.get(device)
    }

    /// The devices of `event`, in order.
    pub fn devices_of(&self, event: Uuid) -> impl Iterator<Item = &str> {
        self.by_event
            .get(&event)
            .into_iter()
            .flat_map(|devices| devices.iter().map(String::as_str))
    }

    /// Every device in at least one event, in order.
    pub(crate) fn devices(&self) -> impl Iterator<Item = &str> {
        self.by_device.keys().map(String::as_str)
    }

    /// Devices in at least one event.
    pub fn len(&self) -> usize {
        self.by_device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(version: u64, devices: &[(&str, &[u128])]) -> DeviceMap {
        let by_device = devices
            .iter()
            .map(|(d, events)| {
                let events = events.iter().map(|e| Uuid::from_u128(*e)).collect();
                ((*d).to_owned(), events)
            })
            .collect();
        DeviceMap::new(version, by_device)
    }

    #[test]
    fn only_a_newer_version_supersedes() {
        let current = map(5, &[]);
        assert!(map(6, &[]).supersedes(&current));
        assert!(!map(5, &[]).supersedes(&current));
        assert!(!map(4, &[]).supersedes(&current));
        assert!(map(1, &[]).supersedes(&DeviceMap::default()));
        assert!(!DeviceMap::default().supersedes(&current));
    }

    #[test]
    fn devices_in_no_event_are_not_counted() {
        let m = map(1, &[("a", &[1, 2]), ("b", &[2]), ("orphan", &[])]);
        assert_eq!((m.len(), m.is_empty()), (2, false));
        assert_eq!(
            m.devices_of(Uuid::from_u128(2)).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let none = DeviceMap::default();
        assert_eq!((none.len(), none.is_empty()), (0, true));
    }
}
