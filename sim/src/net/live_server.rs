//! What the in-memory Redis and Postgres serve the live path: per-instance broadcast groups
//! read with NOACK (a cursor each), heartbeat keys that expire, and the events tables and
//! snapshot query of Postgres.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

use processor_core::live::group_sweep::{dead_groups, group_name, sweep_candidates};
use processor_core::live::Visibility;
use processor_core::stream::EntryId;
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

use super::servers::{now_ms, record, Servers};

#[derive(Debug, Clone)]
pub enum LiveRequest {
    /// Heartbeat, then the group at `$` unless it exists.
    OpenGroup {
        instance: String,
        ttl_ms: u64,
    },
    Heartbeat {
        instance: String,
        ttl_ms: u64,
    },
    ReadGroup {
        instance: String,
        count: usize,
        block_ms: u64,
    },
    RemoveDeadGroups {
        instance: String,
    },
    DestroyGroup {
        instance: String,
    },
    Visibility(Uuid),
    Snapshot(Vec<String>),
    DeviceMap,
    PublicEvents,
    EventDetails(Uuid),
}

#[derive(Debug, Clone)]
pub enum LiveResponse {
    Done,
    Entries(Vec<(EntryId, Option<Bytes>)>),
    /// What Redis answers a read of a group that is gone (it is created again at `$`).
    NoGroup,
    Removed(Vec<String>),
    Visibility(Visibility),
    Snapshot(Vec<WirePosition>),
    DeviceMap(BTreeMap<String, BTreeSet<Uuid>>),
    PublicEvents(Vec<(Uuid, String)>),
    /// Name and `visibility` column of the event, if it exists.
    EventDetails(Option<(String, &'static str)>),
}

/// The broadcast groups' prefix on the simulated Redis (the service's default).
const GROUP_PREFIX: &str = "live-broadcast";

/// The live path's part of the servers' state.
#[derive(Debug, Default)]
pub struct LiveTables {
    /// Instance to its broadcast group's cursor.
    pub groups: BTreeMap<String, EntryId>,
    /// Instance to when its heartbeat expires.
    pub heartbeats: BTreeMap<String, u64>,
    /// Groups removed as dead: (when, whose).
    pub removed: Vec<(u64, String)>,
    /// Groups their own instance destroyed on its way out: (when, whose).
    pub destroyed: Vec<(u64, String)>,
    pub events: BTreeMap<Uuid, (String, Visibility)>,
    /// `entry_devices` joined with `entries`: device to its events.
    pub members: BTreeMap<String, BTreeSet<Uuid>>,
}

pub async fn execute(servers: &Servers, request: LiveRequest) -> LiveResponse {
    match request {
        LiveRequest::ReadGroup {
            instance,
            count,
            block_ms,
        } => {
            let read = servers
                .block(block_ms, |state, now| {
                    let end = state.stream.last_id();
                    let Some(cursor) = state.live.groups.get(&instance).copied() else {
                        state.live.groups.insert(instance.clone(), end);
                        return (None, true);
                    };
                    let got = state.stream.after(cursor, count);
                    if let Some((last, _)) = got.last() {
                        state.live.groups.insert(instance.clone(), *last);
                        record(
                            state,
                            format_args!("{now} broadcast {instance} {} to {last}", got.len()),
                        );
                    }
                    let done = !got.is_empty();
                    (Some(got), done)
                })
                .await;
            match read {
                Some(entries) => LiveResponse::Entries(entries),
                None => LiveResponse::NoGroup,
            }
        }
        other => {
            let mut state = servers.lock();
            let now = now_ms();
            let state = &mut *state;
            let live = &mut state.live;
            match other {
                LiveRequest::OpenGroup { instance, ttl_ms } => {
                    live.heartbeats.insert(instance.clone(), now + ttl_ms);
                    let end = state.stream.last_id();
                    live.groups.entry(instance).or_insert(end);
                    LiveResponse::Done
                }
                LiveRequest::Heartbeat { instance, ttl_ms } => {
                    live.heartbeats.insert(instance, now + ttl_ms);
                    LiveResponse::Done
                }
                LiveRequest::RemoveDeadGroups { instance } => {
                    // The product's own rule picks the groups; this host only plays Redis
                    // (group names, heartbeat keys that expire).
                    let names: Vec<String> = live
                        .groups
                        .keys()
                        .map(|i| group_name(GROUP_PREFIX, i))
                        .collect();
                    let candidates = sweep_candidates(&names, GROUP_PREFIX, &instance);
                    let alive: Vec<bool> = candidates
                        .iter()
                        .map(|c| live.heartbeats.get(c.instance).is_some_and(|t| *t > now))
                        .collect();
                    let dead_names = dead_groups(&candidates, &alive);
                    let dead: Vec<String> = candidates
                        .iter()
                        .filter(|c| dead_names.contains(&c.group))
                        .map(|c| c.instance.to_owned())
                        .collect();
                    for name in &dead {
                        live.groups.remove(name);
                        live.removed.push((now, name.clone()));
                    }
                    LiveResponse::Removed(dead)
                }
                LiveRequest::DestroyGroup { instance } => {
                    live.groups.remove(&instance);
                    live.heartbeats.remove(&instance);
                    live.destroyed.push((now, instance));
                    LiveResponse::Done
                }
                LiveRequest::Visibility(event) => LiveResponse::Visibility(
                    live.events
                        .get(&event)
                        .map_or(Visibility::Unknown, |(_, v)| *v),
                ),
                LiveRequest::Snapshot(devices) => {
                    let store = &state.store;
                    LiveResponse::Snapshot(
                        devices
                            .iter()
                            .filter_map(|d| {
                                store.newest_non_faulty(d).map(|row| WirePosition {
                                    device_id: d.clone(),
                                    lat: row.latitude,
                                    lon: row.longitude,
                                    ts: UnixMillis::as_i64(row.ts),
                                    speed: row.speed,
                                    course: row.angle,
                                })
                            })
                            .collect(),
                    )
                }
                LiveRequest::DeviceMap => LiveResponse::DeviceMap(live.members.clone()),
                LiveRequest::PublicEvents => LiveResponse::PublicEvents(
                    live.events
                        .iter()
                        .filter(|(_, (_, v))| *v == Visibility::Public)
                        .map(|(id, (name, _))| (*id, name.clone()))
                        .collect(),
                ),
                LiveRequest::EventDetails(event) => {
                    LiveResponse::EventDetails(live.events.get(&event).map(|(name, v)| {
                        let column = match v {
                            Visibility::Public => "public",
                            Visibility::Private => "private",
                            Visibility::Unknown => "unknown",
                        };
                        (name.clone(), column)
                    }))
                }
                // Served above: it may block.
                LiveRequest::ReadGroup { .. } => LiveResponse::Done,
            }
        }
    }
}
