//! The one shape every position read returns (device, latitude, longitude, fix time in
//! epoch milliseconds, speed, angle, in that column order), and fix times as Postgres takes them.

use tokio_postgres::Row;

use processor_core::wire::WirePosition;

/// A row of a position read (columns 0 to 5 as above; more may follow).
pub fn position_row(row: &Row) -> Result<WirePosition, tokio_postgres::Error> {
    Ok(WirePosition {
        device_id: row.try_get(0)?,
        lat: row.try_get(1)?,
        lon: row.try_get(2)?,
        ts: row.try_get(3)?,
        speed: row.try_get(4)?,
        course: row.try_get(5)?,
    })
}

/// A fix time as the `SystemTime` Postgres' `timestamptz` takes.
pub fn to_system_time(t: processor_core::UnixMillis) -> std::time::SystemTime {
    use std::time::{Duration, UNIX_EPOCH};
    match u64::try_from(t.as_i64()) {
        Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => UNIX_EPOCH - Duration::from_millis(t.as_i64().unsigned_abs()),
    }
}
