//! Reading a device's stored track for an export, one bounded page at a time along the
//! positions key (device_id, ts).

use std::time::SystemTime;

use deadpool_postgres::Pool;

use super::events::QueryError;

/// One page: a device's non-faulty fixes after `$2` up to `$3` included, by `ts`.
const TRACK_PAGE: &str = "
SELECT s.ts, floor(extract(epoch FROM s.ts) * 1000)::int8, s.latitude, s.longitude
FROM positions s
WHERE s.device_id = $1 AND s.ts > $2 AND s.ts <= $3 AND NOT s.faulty
ORDER BY s.ts
LIMIT $4";

/// Every device of the event's entries, once each, by id: the export's features. Read
/// apart from the event's details, which are capped for one response.
const EVENT_DEVICES: &str = "
SELECT DISTINCT ed.device_id COLLATE \"C\"
FROM entry_devices ed
JOIN entries en ON en.id = ed.entry_id
WHERE en.event_id = $1
ORDER BY 1";

/// One stored fix of a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// The stored `ts`, where the next page starts.
    pub key: SystemTime,
    /// `ts`, epoch milliseconds.
    pub ts: i64,
    pub lat: f64,
    pub lon: f64,
}

/// The devices of `event`'s entries, sorted by id (bytes, as Rust's `String` sorts).
pub async fn event_devices(pool: &Pool, event: uuid::Uuid) -> Result<Vec<String>, QueryError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(EVENT_DEVICES).await?;
    let rows = client.query(&statement, &[&event]).await?;
    rows.iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(QueryError::from)
}

/// At most `limit` fixes of `device` after `after`, up to `to` included. A pooled
/// connection is held for the one statement only, never while the client reads.
pub async fn track_page(
    pool: &Pool,
    device: &str,
    after: SystemTime,
    to: SystemTime,
    limit: i64,
) -> Result<Vec<TrackPoint>, QueryError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(TRACK_PAGE).await?;
    let rows = client
        .query(&statement, &[&device, &after, &to, &limit])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TrackPoint {
                key: row.try_get(0)?,
                ts: row.try_get(1)?,
                lat: row.try_get(2)?,
                lon: row.try_get(3)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(QueryError::from)
}
