//! Stored history for snapshots (contract section 5.1): the rows a [`HistoryQuery`] asks
//! for, read in bounded pages along the positions key (device_id, ts). Which of them form
//! a trail or a resume is decided by the core.

use deadpool_postgres::Pool;
use processor_core::live::HistoryQuery;
use processor_core::wire::WirePosition;

use super::events::{load_snapshot, QueryError};
use super::position_row::position_row;
use super::position_row::to_system_time;

/// Devices per trail statement: a statement returns at most this many devices' samples.
const TRAIL_DEVICES_PER_STATEMENT: usize = 200;

/// Connections one trail load reads over at most (see [`load_trails`]); the shell's
/// history permits count them.
pub const TRAIL_CONNECTIONS: usize = 2;

/// Connections a trail read of `devices` devices uses: one per statement, up to
/// [`TRAIL_CONNECTIONS`].
pub fn trail_parts(devices: usize) -> usize {
    devices
        .div_ceil(TRAIL_DEVICES_PER_STATEMENT)
        .clamp(1, TRAIL_CONNECTIONS)
}

/// Rows per resume page.
const RESUME_PAGE_ROWS: i64 = 1_000;

/// Per device, its newest non-faulty fix (at or before `$4` with the bound), then its
/// non-faulty fixes in the window before it: every one when there are at most `$3`, else
/// the `$3` the core's thinning would keep (index `floor(k * n / $3)` for k in 0..$3, the
/// oldest first), so that what is read is bounded by the trail's size whatever the
/// devices' rate. Both reads walk the positions key of one device.
macro_rules! trail_sql {
    ($head_bound:literal) => {
        concat!(
            "
SELECT x.device_id, x.latitude, x.longitude,
       floor(extract(epoch FROM x.ts) * 1000)::int8 AS ts_ms, x.speed, x.angle
FROM unnest($1::text[]) AS d(device_id)
CROSS JOIN LATERAL (
    SELECT s.ts FROM positions s
    WHERE s.device_id = d.device_id AND NOT s.faulty",
            $head_bound,
            "
    ORDER BY s.ts DESC
    LIMIT 1
) h
CROSS JOIN LATERAL (
    SELECT w.* FROM (
        SELECT s.device_id, s.latitude, s.longitude, s.ts, s.speed, s.angle,
               row_number() OVER (ORDER BY s.ts) - 1 AS i,
               count(*) OVER () AS n
        FROM positions s
        WHERE s.device_id = d.device_id AND NOT s.faulty
          AND s.ts >= h.ts - $2::int8 * interval '1 millisecond' AND s.ts < h.ts
    ) w
    WHERE w.n <= $3
       OR ((w.i * $3 + w.n - 1) / w.n < $3
           AND ((w.i * $3 + w.n - 1) / w.n) * w.n / $3 = w.i)
) x"
        )
    };
}

/// Trails before each device's newest fix.
const TRAIL: &str = trail_sql!("");
/// Trails before each device's newest fix at or before a time (a replay's snapshot).
const TRAIL_AT: &str = trail_sql!(" AND s.ts <= $4");

/// One page of a device's non-faulty fixes after a fix time, along the positions key.
const RESUME_PAGE: &str = "
SELECT s.device_id, s.latitude, s.longitude,
       floor(extract(epoch FROM s.ts) * 1000)::int8 AS ts_ms, s.speed, s.angle, s.ts
FROM positions s
WHERE s.device_id = $1 AND s.ts > $2 AND NOT s.faulty
ORDER BY s.ts
LIMIT $3";

/// The newest non-faulty stored position of each of `devices`, and the history `query`
/// asks for, in no particular order (a device's newest row may come twice).
pub async fn load_history(
    pool: &Pool,
    devices: &[String],
    query: HistoryQuery,
) -> Result<Vec<WirePosition>, QueryError> {
    let mut rows = load_snapshot(pool, devices).await?;
    match query {
        HistoryQuery::Latest => {}
        HistoryQuery::Trail {
            window_ms,
            max_rows_per_device,
        } => {
            rows.extend(load_trails(pool, devices, window_ms, max_rows_per_device, None).await?);
        }
        HistoryQuery::Since { since, max_rows } => {
            rows.extend(load_since(pool, devices, since, max_rows).await?);
        }
    }
    Ok(rows)
}

/// The trail rows of `devices` (without their newest fixes), before their newest fix or,
/// with `at`, before their newest fix at or before `at`. More devices than one statement
/// takes are read over [`TRAIL_CONNECTIONS`] connections at once: a trail statement spends
/// its time on heap pages (a device's rows are spread over as many pages as it has rows),
/// which two backends visit in half the time.
pub(crate) async fn load_trails(
    pool: &Pool,
    devices: &[String],
    window_ms: u64,
    max_rows_per_device: usize,
    at: Option<processor_core::UnixMillis>,
) -> Result<Vec<WirePosition>, QueryError> {
    let parts = trail_parts(devices.len());
    let part_len = devices.len().div_ceil(parts).max(1);
    let reads = devices
        .chunks(part_len)
        .map(|part| load_trail_part(pool, part, window_ms, max_rows_per_device, at));
    let parts = futures_util::future::try_join_all(reads).await?;
    Ok(parts.into_iter().flatten().collect())
}

async fn load_trail_part(
    pool: &Pool,
    devices: &[String],
    window_ms: u64,
    max_rows_per_device: usize,
    at: Option<processor_core::UnixMillis>,
) -> Result<Vec<WirePosition>, QueryError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(if at.is_some() { TRAIL_AT } else { TRAIL })
        .await?;
    let at = at.map(to_system_time);
    let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
    let per_device = i64::try_from(max_rows_per_device)
        .unwrap_or(i64::MAX)
        .max(1);
    let mut out = Vec::new();
    for chunk in devices.chunks(TRAIL_DEVICES_PER_STATEMENT) {
        let rows = match &at {
            Some(at) => {
                client
                    .query(&statement, &[&chunk, &window, &per_device, at])
                    .await?
            }
            None => {
                client
                    .query(&statement, &[&chunk, &window, &per_device])
                    .await?
            }
        };
        for row in &rows {
            out.push(position_row(row)?);
        }
    }
    Ok(out)
}

/// Every non-faulty fix after `since` of each device, device by device in `ts` order,
/// stopping once more than `max_rows` were read: the core then knows there are too many.
async fn load_since(
    pool: &Pool,
    devices: &[String],
    since: processor_core::UnixMillis,
    max_rows: usize,
) -> Result<Vec<WirePosition>, QueryError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(RESUME_PAGE).await?;
    let mut out = Vec::new();
    'devices: for device in devices {
        let mut after = to_system_time(since);
        loop {
            let rows = client
                .query(&statement, &[device, &after, &RESUME_PAGE_ROWS])
                .await?;
            for row in &rows {
                out.push(position_row(row)?);
                after = row.try_get(6)?;
                if out.len() > max_rows {
                    break 'devices;
                }
            }
            if (rows.len() as i64) < RESUME_PAGE_ROWS {
                break;
            }
        }
    }
    Ok(out)
}
