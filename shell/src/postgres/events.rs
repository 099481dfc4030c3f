//! Queries of the live path: events, the device-to-event map, snapshots.
