//! Queries of the live path: events, the device-to-event map, snapshots.
//!
//! Every function takes a connection from the pool for one prepared statement and returns
//! what went wrong as it is: whether and when to retry is the caller's business.

use std::collections::{BTreeMap, BTreeSet};

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
