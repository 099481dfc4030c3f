//! `processor admin event ...`.

use time::OffsetDateTime;
use tokio_postgres::Client;
use uuid::Uuid;

use processor_core::admin::{same_event, Change, EventValues, EventVisibility, TimeWindow};

use super::cli::{EventCreate, EventUpdate};
use super::AdminError;

/// An event as `event list` shows it.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: Uuid,
    pub name: String,
    pub visibility: String,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub entries: i64,
}

/// Creates the event, or finds the same one already there (same `--id`, same values).
pub async fn create(client: &mut Client, create: &EventCreate) -> Result<Uuid, AdminError> {
    let window = TimeWindow::new(create.starts_at, create.ends_at)?;
    let tx = client.transaction().await?;
    let inserted = tx
        .query_opt(
            "INSERT INTO events (id, name, visibility, starts_at, ends_at)
             VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
            &[
                &create.id,
                &create.name,
                &create.visibility.as_str(),
                &window.starts_at(),
                &window.ends_at(),
            ],
        )
        .await?;
    if let Some(row) = inserted {
        let id: Uuid = row.try_get(0)?;
        tx.commit().await?;
        return Ok(id);
    }
    // Only an explicit id can conflict: this is a re-run, or a mistake.
    let id = create.id.unwrap_or_default();
    let row = tx
        .query_one(
            "SELECT name, visibility, starts_at, ends_at FROM events WHERE id = $1",
            &[&id],
        )
        .await?;
    let (name, visibility): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    let (starts_at, ends_at) = (row.try_get(2)?, row.try_get(3)?);
    // The column's check constraint allows these two only; anything else is not the same.
    let same = visibility
        .parse::<EventVisibility>()
        .is_ok_and(|visibility| {
            let stored = EventValues {
                name: &name,
                visibility,
                starts_at,
                ends_at,
            };
            same_event(
                &stored,
                &EventValues::new(&create.name, create.visibility, &window),
            )
        });
    if !same {
        return Err(AdminError::Conflict(format!(
            "event {id} already exists with other values; change it with `processor admin event update {id}`"
        )));
    }
    Ok(id)
}

pub async fn list(client: &Client) -> Result<Vec<EventRow>, AdminError> {
    let rows = client
        .query(
            "SELECT e.id, e.name, e.visibility, e.starts_at, e.ends_at,
                    (SELECT count(*) FROM entries en WHERE en.event_id = e.id)
             FROM events e
             ORDER BY e.starts_at NULLS LAST, e.name, e.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(EventRow {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                visibility: row.try_get(2)?,
                starts_at: row.try_get(3)?,
                ends_at: row.try_get(4)?,
                entries: row.try_get(5)?,
            })
        })
        .collect()
}

pub async fn update(client: &mut Client, update: &EventUpdate) -> Result<Uuid, AdminError> {
    let starts_at = change(update.starts_at, update.clear_starts_at);
    let ends_at = change(update.ends_at, update.clear_ends_at);
    if update.name.is_none()
        && update.visibility.is_none()
        && starts_at == Change::Keep
        && ends_at == Change::Keep
    {
        return Err(AdminError::NothingToChange(
            "--name, --visibility, --starts-at, --clear-starts-at, --ends-at, --clear-ends-at",
        ));
    }
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT starts_at, ends_at FROM events WHERE id = $1 FOR UPDATE",
            &[&update.event],
        )
        .await?
    else {
        return Err(AdminError::NoEvent(update.event));
    };
    let stored = TimeWindow::new(row.try_get(0)?, row.try_get(1)?)?;
    let window = stored.changed(starts_at, ends_at)?;
    tx.execute(
        "UPDATE events SET name = coalesce($2, name), visibility = coalesce($3, visibility),
                starts_at = $4, ends_at = $5
         WHERE id = $1",
        &[
            &update.event,
            &update.name,
            &update.visibility.map(EventVisibility::as_str),
            &window.starts_at(),
            &window.ends_at(),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(update.event)
}

fn change(value: Option<OffsetDateTime>, clear: bool) -> Change<OffsetDateTime> {
    match (value, clear) {
        (Some(t), _) => Change::Set(t),
        (None, true) => Change::Clear,
        (None, false) => Change::Keep,
    }
}

/// Locks the event's row for the rest of the transaction, so that concurrent changes to
/// its entries and devices take turns and the one-entry-per-device rule holds.
pub async fn lock(tx: &tokio_postgres::Transaction<'_>, event: Uuid) -> Result<(), AdminError> {
    tx.query_opt("SELECT 1 FROM events WHERE id = $1 FOR UPDATE", &[&event])
        .await?
        .map(|_| ())
        .ok_or(AdminError::NoEvent(event))
}
