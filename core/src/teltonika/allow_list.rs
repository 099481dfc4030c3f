//! Which trackers the gateway admits.

use std::collections::HashSet;

/// Everyone, or only the device ids listed (the `device_id`s of `entry_devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    Everyone,
    Only(HashSet<String>),
}

impl AllowList {
    pub fn admits(&self, imei: &str) -> bool {
        match self {
            AllowList::Everyone => true,
            AllowList::Only(ids) => ids.contains(imei),
        }
    }
}
