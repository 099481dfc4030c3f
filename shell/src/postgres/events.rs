//! Queries of the live path: events, the device-to-event map, snapshots.
//!
//! Every function takes a connection from the pool for one prepared statement and returns
//! what went wrong as it is: whether and when to retry is the caller's business.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use processor_core::live::Visibility;
use processor_core::wire::server::WirePosition;

use super::position_row::position_row;

/// The device-to-event map: every device of every entry, with the entry's event.
const DEVICE_MAP: &str = "
SELECT ed.device_id, e.event_id
FROM entry_devices ed
JOIN entries e ON e.id = ed.entry_id";

const EVENT_VISIBILITY: &str = "SELECT visibility FROM events WHERE id = $1";

/// Private events are left out: they must not be discoverable (contract section 5).
const PUBLIC_EVENTS: &str = "
SELECT id, name, starts_at, ends_at FROM events
WHERE visibility = 'public'
ORDER BY name, id
LIMIT 1000";

/// Per device, its newest non-faulty fix: a backward probe of the positions key
/// (device_id, ts) that stops at the first row not faulty. A device with a long run of
/// faulty fixes makes its probe walk them; devices never seen (or only seen faulty) are left
/// out. The "C" collation orders device ids by bytes, as Rust's `String` does.
const SNAPSHOT: &str = "
SELECT p.device_id, p.latitude, p.longitude,
       floor(extract(epoch FROM p.ts) * 1000)::int8 AS ts_ms,
       p.speed, p.angle
FROM unnest($1::text[]) AS d(device_id)
CROSS JOIN LATERAL (
    SELECT s.device_id, s.latitude, s.longitude, s.ts, s.speed, s.angle
    FROM positions s
    WHERE s.device_id = d.device_id AND NOT s.faulty
    ORDER BY s.ts DESC
    LIMIT 1
) p
ORDER BY p.device_id COLLATE \"C\"";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no Postgres connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Postgres query failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Device id -> the events it belongs to through an entry. A device in no entry is absent.
pub async fn load_device_map(pool: &Pool) -> Result<BTreeMap<String, BTreeSet<Uuid>>, QueryError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(DEVICE_MAP).await?;
    let rows = client.query(&statement, &[]).await?;
    let mut map: BTreeMap<String, BTreeSet<Uuid>> = BTreeMap::new();
    for row in rows {
        let device: String = row.try_get(0)?;
        let event: Uuid = row.try_get(1)?;
        map.entry(device).or_default().insert(event);
    }
    Ok(map)
}

/// The event's visibility; [`Visibility::Unknown`] when there is no such event.
pub async fn event_visibility(pool: &Pool, event: Uuid) -> Result<Visibility, QueryError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(EVENT_VISIBILITY).await?;
    let row = client.query_opt(&statement, &[&event]).await?;
    let value: Option<String> = match row {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    Ok(Visibility::from_column(value.as_deref()))
}

/// A public event, as the map page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicEvent {
    pub id: Uuid,
    pub name: String,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
}

/// The public events, by name (at most 1,000).
pub async fn public_events(pool: &Pool) -> Result<Vec<PublicEvent>, QueryError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(PUBLIC_EVENTS).await?;
    let rows = client.query(&statement, &[]).await?;
    rows.iter()
        .map(|row| {
            Ok(PublicEvent {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                starts_at: row.try_get(2)?,
                ends_at: row.try_get(3)?,
            })
        })
        .collect()
}

/// One event with its entries and their devices (`GET /events/<uuid>`, `processor admin
/// entry list`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventDetails {
    pub id: Uuid,
    pub name: String,
    /// The column's value; [`Visibility::from_column`] of it decides who may see the event.
    pub visibility: String,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    /// By bib (shorter first, so that 2 comes before 10), entries without one last.
    pub entries: Vec<EntryDetails>,
    /// More entries than were read: the list stops at the cap.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntryDetails {
    pub id: Uuid,
    pub name: Option<String>,
    pub bib: Option<String>,
    /// Sorted; at most [`MAX_DEVICES_PER_ENTRY`].
    pub devices: Vec<String>,
}

/// Entries read for one event at most, so that one response is bounded whatever is in the
/// tables: a start list holds at most as many (`processor_core::admin::MAX_START_LIST_ROWS`).
pub const MAX_ENTRIES: i64 = 10_000;

/// Devices listed per entry at most: a participant carries one tracker, a crew a few.
pub const MAX_DEVICES_PER_ENTRY: i64 = 100;

const EVENT: &str = "SELECT id, name, visibility, starts_at, ends_at FROM events WHERE id = $1";

const EVENT_ENTRIES: &str = "
SELECT en.id, en.name, en.bib,
       coalesce((SELECT array_agg(d.device_id ORDER BY d.device_id)
                 FROM (SELECT ed.device_id FROM entry_devices ed
                       WHERE ed.entry_id = en.id
                       ORDER BY ed.device_id
                       LIMIT $3) d),
                '{}'::text[])
FROM entries en
WHERE en.event_id = $1
ORDER BY en.bib IS NULL, length(en.bib), en.bib, en.name, en.id
LIMIT $2";

/// The event with its first [`MAX_ENTRIES`] entries; `None` when there is no such event.
/// Takes a plain client, so that the admin commands read the same way.
pub async fn event_details(
    client: &tokio_postgres::Client,
    event: Uuid,
) -> Result<Option<EventDetails>, tokio_postgres::Error> {
    let Some(row) = client.query_opt(EVENT, &[&event]).await? else {
        return Ok(None);
    };
    let rows = client
        .query(
            EVENT_ENTRIES,
            &[&event, &(MAX_ENTRIES + 1), &MAX_DEVICES_PER_ENTRY],
        )
        .await?;
    let truncated = rows.len() as i64 > MAX_ENTRIES;
    let entries = rows
        .iter()
        .take(MAX_ENTRIES as usize)
        .map(|row| {
            Ok(EntryDetails {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                bib: row.try_get(2)?,
                devices: row.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(Some(EventDetails {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        visibility: row.try_get(2)?,
        starts_at: row.try_get(3)?,
        ends_at: row.try_get(4)?,
        entries,
        truncated,
    }))
}

/// [`event_details`] on a pooled connection.
pub async fn pooled_event_details(
    pool: &Pool,
    event: Uuid,
) -> Result<Option<EventDetails>, QueryError> {
    let client = pool.get().await?;
    Ok(event_details(&client, event).await?)
}

/// The newest non-faulty stored position of each of `devices` that has one, sorted by
/// device id. Devices never seen (or only seen faulty) are left out.
pub async fn load_snapshot(
    pool: &Pool,
    devices: &[String],
) -> Result<Vec<WirePosition>, QueryError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await?;
    let statement = client.prepare_cached(SNAPSHOT).await?;
    let rows = client.query(&statement, &[&devices]).await?;
    rows.iter().map(|row| Ok(position_row(row)?)).collect()
}

/// Event visibilities read recently, each trusted for `ttl_ms` after it was read. Holds at
/// most `capacity` events; inserting one more evicts the one stored longest ago. Pure:
/// the time is passed in (epoch milliseconds), never read.
#[derive(Debug)]
pub struct VisibilityCache {
    ttl_ms: u64,
    capacity: usize,
    entries: HashMap<Uuid, Cached>,
    /// Insertion order, oldest first. An event inserted again leaves its earlier
    /// `(seq, event)` here; such stale pairs are skipped when evicting and compacted away.
    order: VecDeque<(u64, Uuid)>,
    next_seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    visibility: Visibility,
    stored_at: u64,
    seq: u64,
}

impl VisibilityCache {
    pub fn new(ttl_ms: u64, capacity: usize) -> VisibilityCache {
        VisibilityCache {
            ttl_ms,
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// The visibility stored for `event` if it is still fresh at `now_ms`. An entry stored
    /// "in the future" (the clock went back) is not trusted.
    pub fn get(&self, event: Uuid, now_ms: u64) -> Option<Visibility> {
        let cached = self.entries.get(&event)?;
        let fresh = now_ms >= cached.stored_at && now_ms - cached.stored_at < self.ttl_ms;
        fresh.then_some(cached.visibility)
    }

    pub fn insert(&mut self, event: Uuid, visibility: Visibility, now_ms: u64) {
        if self.capacity == 0 || self.ttl_ms == 0 {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let cached = Cached {
            visibility,
            stored_at: now_ms,
            seq,
        };
        if self.entries.insert(event, cached).is_none() {
            while self.entries.len() > self.capacity {
                self.evict_oldest(event);
            }
        }
        self.order.push_back((seq, event));
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(seq, event)| entries.get(event).is_some_and(|c| c.seq == *seq));
        }
    }

    /// Removes the entry stored longest ago, other than `keep` (the one being inserted,
    /// not yet in `order`).
    fn evict_oldest(&mut self, keep: Uuid) {
        while let Some((seq, event)) = self.order.pop_front() {
            if event != keep && self.entries.get(&event).is_some_and(|c| c.seq == seq) {
                self.entries.remove(&event);
                return;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_fresh_entry_is_returned() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Private, 5_000);
        assert_eq!(cache.get(id(1), 5_000), Some(Visibility::Private));
        assert_eq!(cache.get(id(1), 5_999), Some(Visibility::Private));
        assert_eq!(cache.get(id(2), 5_000), None);
    }

    #[test]
    fn an_entry_expires_after_the_ttl() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Public, 5_000);
        assert_eq!(cache.get(id(1), 6_000), None);
        assert_eq!(cache.get(id(1), 60_000), None);
    }

    #[test]
    fn an_entry_from_the_future_is_not_trusted() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Public, 5_000);
        assert_eq!(cache.get(id(1), 4_999), None);
    }

    #[test]
    fn unknown_is_cached_like_any_other_answer() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Unknown, 0);
        assert_eq!(cache.get(id(1), 10), Some(Visibility::Unknown));
    }

    #[test]
    fn inserting_again_replaces_and_restarts_the_ttl() {
        let mut cache = VisibilityCache::new(1_000, 10);
        cache.insert(id(1), Visibility::Public, 0);
        cache.insert(id(1), Visibility::Private, 900);
        assert_eq!(cache.get(id(1), 1_500), Some(Visibility::Private));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_oldest_entry_is_evicted_when_full() {
        let mut cache = VisibilityCache::new(10_000, 2);
        cache.insert(id(1), Visibility::Public, 0);
        cache.insert(id(2), Visibility::Public, 1);
        cache.insert(id(3), Visibility::Private, 2);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(id(1), 3), None);
        assert_eq!(cache.get(id(2), 3), Some(Visibility::Public));
        assert_eq!(cache.get(id(3), 3), Some(Visibility::Private));
    }

    #[test]
    fn a_reinserted_entry_counts_as_new_for_eviction() {
        let mut cache = VisibilityCache::new(10_000, 2);
        cache.insert(id(1), Visibility::Public, 0);
        cache.insert(id(2), Visibility::Public, 1);
        cache.insert(id(1), Visibility::Private, 2);
        cache.insert(id(3), Visibility::Public, 3);
        assert_eq!(cache.get(id(2), 4), None);
        assert_eq!(cache.get(id(1), 4), Some(Visibility::Private));
        assert_eq!(cache.get(id(3), 4), Some(Visibility::Public));
    }

    #[test]
    fn many_reinserts_keep_the_order_queue_bounded() {
        let mut cache = VisibilityCache::new(10_000, 3);
        for t in 0..1_000u64 {
            cache.insert(id(u128::from(t % 2)), Visibility::Public, t);
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.order.len() <= 6);
        cache.insert(id(7), Visibility::Private, 1_000);
        cache.insert(id(8), Visibility::Private, 1_001);
        assert_eq!(cache.len(), 3);
        // Of the two reinserted over and over, the one written less recently went first.
        assert_eq!(cache.get(id(0), 1_002), None);
        assert_eq!(cache.get(id(1), 1_002), Some(Visibility::Public));
    }

    #[test]
    fn zero_capacity_or_ttl_caches_nothing() {
        let mut none = VisibilityCache::new(1_000, 0);
        none.insert(id(1), Visibility::Public, 0);
        assert!(none.is_empty());
        let mut zero_ttl = VisibilityCache::new(0, 10);
        zero_ttl.insert(id(1), Visibility::Public, 0);
        assert_eq!(zero_ttl.get(id(1), 0), None);
    }
}
