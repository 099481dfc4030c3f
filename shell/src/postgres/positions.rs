//! Storing positions: one statement per batch, idempotent.

use std::time::Instant;

use deadpool_postgres::Pool;
use std::collections::BTreeMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use processor_core::durable::{WriteFailure, WriteRow};
use processor_core::AttributeValue;

use super::position_row::to_system_time;

/// One round trip and one implicit transaction per batch. Arrays keep a single statement
/// text for every batch size (multi-row VALUES would cache a plan per size and hit the
/// parameter limit). The core has already removed duplicates inside the batch and sorted
/// the rows, so every writer takes the key's locks in one order. Nothing else is maintained
/// here: the latest position of a device is read from the positions key itself
/// (`postgres::events`), so storing a row is one heap insert and one key insert.
///
/// `{skip_stored}` is how rows already stored are left out; see [`FAST_SKIP`].
const INSERT_BATCH_TEMPLATE: &str = "
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[],
        $6::float8[], $7::float8[], $8::int2[], $9::int2[], $10::int4[], $11::jsonb[],
        $12::bool[], $13::timestamptz[]
    ) AS t(device_id, ts, latitude, longitude, altitude, angle, speed, satellites,
           priority, event_io_id, attributes, faulty, received_at)
), inserted AS (
    INSERT INTO positions AS p (device_id, ts, latitude, longitude, altitude, angle, speed,
                           satellites, priority, event_io_id, attributes, faulty, received_at)
    SELECT * FROM input i
    {skip_stored}
    RETURNING 1
)
SELECT count(*) FROM inserted";

/// An anti-join: measured at about 1.5x the speed of ON CONFLICT on the positions key
/// (docs/BENCHMARKS.md), but it cannot see a row another transaction is inserting at the
/// same moment, so such a race ends in a unique violation.
const FAST_SKIP: &str =
    "WHERE NOT EXISTS (SELECT 1 FROM positions s WHERE s.device_id = i.device_id AND s.ts = i.ts)";

/// Waits for the concurrent insert and skips the row: used to redo a batch that raced.
const SAFE_SKIP: &str = "ON CONFLICT (device_id, ts) DO NOTHING";

#[derive(Clone)]
pub struct PositionStore {
    pool: Pool,
    fast: String,
    safe: String,
}

impl PositionStore {
    pub fn new(pool: Pool) -> PositionStore {
        PositionStore {
            pool,
            fast: INSERT_BATCH_TEMPLATE.replace("{skip_stored}", FAST_SKIP),
            safe: INSERT_BATCH_TEMPLATE.replace("{skip_stored}", SAFE_SKIP),
        }
    }

    /// Stores `rows`; `Ok(n)` once committed, n being the rows not stored before.
    pub async fn write(&self, rows: &[WriteRow]) -> Result<u64, WriteFailure> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| WriteFailure::Transient(format!("no Postgres connection: {e}")))?;
        let columns = Columns::from_rows(rows);
        match self.insert(&client, &self.fast, &columns).await {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Another writer stored one of these rows while this statement ran.
                self.insert(&client, &self.safe, &columns)
                    .await
                    .map_err(|e| classify(&e))
            }
            result => result.map_err(|e| classify(&e)),
        }
    }

    async fn insert(
        &self,
        client: &deadpool_postgres::Client,
        sql: &str,
        columns: &Columns<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = client.prepare_cached(sql).await?;
        let row = client
            .query_one(
                &statement,
                &[
                    &columns.device_id,
                    &columns.ts,
                    &columns.latitude,
                    &columns.longitude,
                    &columns.altitude,
                    &columns.angle,
                    &columns.speed,
                    &columns.satellites,
                    &columns.priority,
                    &columns.event_io_id,
                    &columns.attributes,
                    &columns.faulty,
                    &columns.received_at,
                ],
            )
            .await?;
        let inserted: i64 = row.try_get(0)?;
        Ok(u64::try_from(inserted).unwrap_or(0))
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> bool {
        let started = Instant::now();
        let ok = match self.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        tracing::trace!(
            ok,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "postgres ping"
        );
        ok
    }
}

/// What the core makes of a failed insert: the SQLSTATE decides (`WriteFailure::of_insert`).
fn classify(error: &tokio_postgres::Error) -> WriteFailure {
    let message = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned());
    WriteFailure::of_insert(error.code().map(SqlState::code), message)
}

/// The rows turned into one array per column.
struct Columns<'a> {
    device_id: Vec<&'a str>,
    ts: Vec<std::time::SystemTime>,
    latitude: Vec<f64>,
    longitude: Vec<f64>,
    altitude: Vec<f64>,
    angle: Vec<f64>,
    speed: Vec<f64>,
    satellites: Vec<i16>,
    priority: Vec<i16>,
    event_io_id: Vec<Option<i32>>,
    attributes: Vec<Json<&'a BTreeMap<String, AttributeValue>>>,
    faulty: Vec<bool>,
    received_at: Vec<std::time::SystemTime>,
}

impl<'a> Columns<'a> {
    fn from_rows(rows: &'a [WriteRow]) -> Columns<'a> {
        let n = rows.len();
        let mut c = Columns {
            device_id: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            latitude: Vec::with_capacity(n),
            longitude: Vec::with_capacity(n),
            altitude: Vec::with_capacity(n),
            angle: Vec::with_capacity(n),
            speed: Vec::with_capacity(n),
            satellites: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            event_io_id: Vec::with_capacity(n),
            attributes: Vec::with_capacity(n),
            faulty: Vec::with_capacity(n),
            received_at: Vec::with_capacity(n),
        };
        for row in rows {
            let p = &row.position;
            c.device_id.push(&p.device_id);
            c.ts.push(to_system_time(p.ts));
            c.latitude.push(p.latitude);
            c.longitude.push(p.longitude);
            c.altitude.push(p.altitude);
            c.angle.push(p.angle);
            c.speed.push(p.speed);
            c.satellites.push(i16::from(p.satellites));
            c.priority.push(i16::from(p.priority));
            c.event_io_id.push(p.event_io_id);
            c.attributes.push(Json(&p.attributes));
            c.faulty.push(row.faulty);
            c.received_at.push(to_system_time(row.received_at));
        }
        c
    }
}
