//! What a replay reads (contract section 5.1): the event as it was at a time, and its
//! positions in replay key order (ts, device), a bounded page at a time.

use std::time::SystemTime;

use deadpool_postgres::Pool;

use processor_core::live::{HistoryQuery, ReplayKey};
use processor_core::wire::WirePosition;
use processor_core::UnixMillis;

use super::events::QueryError;
use super::history::load_trails;
use super::position_row::position_row;
use super::position_row::to_system_time;

/// Per device, its newest non-faulty fix at or before `$2`: a backward probe of the
/// positions key from that time.
const SNAPSHOT_AT: &str = "
SELECT p.device_id, p.latitude, p.longitude,
       floor(extract(epoch FROM p.ts) * 1000)::int8 AS ts_ms, p.speed, p.angle
FROM unnest($1::text[]) AS d(device_id)
CROSS JOIN LATERAL (
    SELECT s.device_id, s.latitude, s.longitude, s.ts, s.speed, s.angle
    FROM positions s
    WHERE s.device_id = d.device_id AND NOT s.faulty AND s.ts <= $2
    ORDER BY s.ts DESC
    LIMIT 1
) p";

/// The devices' non-faulty fixes in one slice of time, `$2 <= ts <= $3` (at `$2` only
/// devices after `$4`), in replay key order. The "C" collation orders device ids by
/// bytes, as the core's key does. A slice bounds what Postgres sorts for one page.
const SLICE: &str = "
SELECT s.device_id, s.latitude, s.longitude,
       floor(extract(epoch FROM s.ts) * 1000)::int8 AS ts_ms, s.speed, s.angle
FROM positions s
WHERE s.device_id = ANY($1::text[]) AND NOT s.faulty
  AND s.ts >= $2 AND s.ts <= $3
  AND (s.ts > $2 OR s.device_id COLLATE \"C\" > $4)
ORDER BY s.ts, s.device_id COLLATE \"C\"
LIMIT $5";

/// A page's first slice of event time holds about the page's rows if every device reports
/// once every `ASSUMED_INTERVAL_MS` (trackers in races report every 1 to 5 s); a slice with
/// fewer rows than the page still wants doubles the next, up to [`MAX_SLICE_MS`], so that a
/// quiet stretch costs few statements. Postgres reads and sorts a whole slice before the
/// page's LIMIT: a fixed one-minute slice read 60,000 rows of 1,000 devices for a page of
/// 1,000 (80 ms), and a replay at 60x of 1,000 devices could not keep pace.
const ASSUMED_INTERVAL_MS: i64 = 1_000;
const MAX_SLICE_MS: i64 = 24 * 3_600_000;

/// The newest non-faulty row of each of `devices` at or before `at`, and the trail rows
/// `history` asks for before those (in no particular order).
pub async fn snapshot_at(
    pool: &Pool,
    devices: &[String],
    at: UnixMillis,
    history: HistoryQuery,
) -> Result<Vec<WirePosition>, QueryError> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<WirePosition> = {
        let client = pool.get().await?;
        let statement = client.prepare_cached(SNAPSHOT_AT).await?;
        let rows = client
            .query(&statement, &[&devices, &to_system_time(at)])
            .await?;
        rows.iter().map(position_row).collect::<Result<_, _>>()?
    };
    if let HistoryQuery::Trail {
        window_ms,
        max_rows_per_device,
    } = history
    {
        out.extend(load_trails(pool, devices, window_ms, max_rows_per_device, Some(at)).await?);
    }
    Ok(out)
}

/// At most `limit` positions after `after` up to `to`, in key order; fewer only when there
/// are no more.
pub async fn page(
    pool: &Pool,
    devices: &[String],
    after: ReplayKey,
    to: UnixMillis,
    limit: usize,
) -> Result<Vec<WirePosition>, QueryError> {
    let mut out: Vec<WirePosition> = Vec::new();
    if devices.is_empty() || limit == 0 {
        return Ok(out);
    }
    let client = pool.get().await?;
    let statement = client.prepare_cached(SLICE).await?;
    let (mut start, mut device) = (after.ts, after.device);
    let wanted_rows = i64::try_from(limit).unwrap_or(i64::MAX);
    let devices_n = i64::try_from(devices.len()).unwrap_or(i64::MAX).max(1);
    let mut slice =
        (wanted_rows.saturating_mul(ASSUMED_INTERVAL_MS) / devices_n).clamp(1, MAX_SLICE_MS);
    while out.len() < limit && start <= to {
        let end = UnixMillis(start.as_i64().saturating_add(slice)).min(to);
        let wanted = i64::try_from(limit - out.len()).unwrap_or(i64::MAX);
        let (from_t, end_t): (SystemTime, SystemTime) =
            (to_system_time(start), to_system_time(end));
        let rows = client
            .query(&statement, &[&devices, &from_t, &end_t, &device, &wanted])
            .await?;
        if (rows.len() as i64) < wanted {
            slice = slice.saturating_mul(2).min(MAX_SLICE_MS);
        }
        for row in &rows {
            out.push(position_row(row)?);
        }
        // The next slice starts after this one (fix times are whole milliseconds).
        start = UnixMillis(end.as_i64().saturating_add(1));
        device = String::new();
    }
    Ok(out)
}
