//! `processor admin entry ...`.

use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use crate::postgres::events::{event_details, EventDetails};

use processor_core::admin::{
    bib_taken_by, entry_by_bib, entry_by_id, EntryCreate as Verdict, EntryValues,
};

use super::cli::{EntryCreate, EntryRef, EntryUpdate};
use super::{events, AdminError};

/// Creates the entry, or finds the same one already there (same `--id`, or same bib in the
/// event with the same name).
pub async fn create(client: &mut Client, create: &EntryCreate) -> Result<Uuid, AdminError> {
    let tx = client.transaction().await?;
    events::lock(&tx, create.event).await?;
    if let Some(id) = create.id {
        if let Some(row) = tx
            .query_opt(
                "SELECT event_id, name, bib FROM entries WHERE id = $1",
                &[&id],
            )
            .await?
        {
            let (event, name, bib): (Uuid, Option<String>, Option<String>) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let stored = EntryValues {
                event,
                name: name.as_deref(),
                bib: bib.as_deref(),
            };
            return match entry_by_id(id, &stored, &asked(create)) {
                Verdict::Existing(id) => Ok(id),
                Verdict::Conflict => Err(AdminError::Conflict(format!(
                    "entry {id} already exists with other values; change it with `processor admin entry update --entry {id}`"
                ))),
            };
        }
    }
    if let Some(bib) = &create.bib {
        if let Some((holder, name)) = by_bib(&tx, create.event, bib).await? {
            let verdict = entry_by_bib(holder, name.as_deref(), create.id, create.name.as_deref());
            if let Verdict::Existing(id) = verdict {
                return Ok(id);
            }
            return Err(AdminError::Conflict(format!(
                "bib {bib} is already entry {holder} ({}) of event {}; change it with `processor admin entry update --entry {holder}`",
                name.as_deref().unwrap_or("no name"),
                create.event
            )));
        }
    }
    let row = tx
        .query_one(
            "INSERT INTO entries (id, event_id, name, bib)
             VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4)
             RETURNING id",
            &[&create.id, &create.event, &create.name, &create.bib],
        )
        .await?;
    let id = row.try_get(0)?;
    tx.commit().await?;
    Ok(id)
}

/// What a `create` asks for, as the rules compare it.
fn asked(create: &EntryCreate) -> EntryValues<'_> {
    EntryValues {
        event: create.event,
        name: create.name.as_deref(),
        bib: create.bib.as_deref(),
    }
}

/// The entry holding `bib` in `event`, with its name.
pub async fn by_bib(
    tx: &Transaction<'_>,
    event: Uuid,
    bib: &str,
) -> Result<Option<(Uuid, Option<String>)>, AdminError> {
    let row = tx
        .query_opt(
            "SELECT id, name FROM entries WHERE event_id = $1 AND bib = $2",
            &[&event, &bib],
        )
        .await?;
    Ok(match row {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    })
}

/// The event's entries with their devices.
pub async fn list(client: &Client, event: Uuid) -> Result<EventDetails, AdminError> {
    event_details(client, event)
        .await?
        .ok_or(AdminError::NoEvent(event))
}

pub async fn update(client: &mut Client, update: &EntryUpdate) -> Result<Uuid, AdminError> {
    if update.name.is_none() && !update.clear_name && update.new_bib.is_none() && !update.clear_bib
    {
        return Err(AdminError::NothingToChange(
            "--name, --clear-name, --new-bib, --clear-bib",
        ));
    }
    let tx = client.transaction().await?;
    let (entry, event) = resolve(&tx, &update.entry).await?;
    if let Some(bib) = &update.new_bib {
        let holder = by_bib(&tx, event, bib).await?.map(|(holder, _)| holder);
        if let Some(holder) = bib_taken_by(entry, holder) {
            return Err(AdminError::Conflict(format!(
                "bib {bib} is already entry {holder} of event {event}"
            )));
        }
    }
    tx.execute(
        "UPDATE entries SET
             name = CASE WHEN $2 THEN NULL ELSE coalesce($3, name) END,
             bib = CASE WHEN $4 THEN NULL ELSE coalesce($5, bib) END
         WHERE id = $1",
        &[
            &entry,
            &update.clear_name,
            &update.name,
            &update.clear_bib,
            &update.new_bib,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(entry)
}

/// The entry an [`EntryRef`] names, and its event, whose row is then locked (see
/// [`events::lock`]).
pub async fn resolve(tx: &Transaction<'_>, entry: &EntryRef) -> Result<(Uuid, Uuid), AdminError> {
    match (&entry.entry, &entry.event, &entry.bib) {
        (Some(id), _, _) => {
            let row = tx
                .query_opt("SELECT event_id FROM entries WHERE id = $1", &[id])
                .await?
                .ok_or(AdminError::NoEntry(*id))?;
            let event: Uuid = row.try_get(0)?;
            events::lock(tx, event).await?;
            Ok((*id, event))
        }
        (None, Some(event), Some(bib)) => {
            events::lock(tx, *event).await?;
            let (id, _) = by_bib(tx, *event, bib)
                .await?
                .ok_or_else(|| AdminError::NoBib {
                    event: *event,
                    bib: bib.clone(),
                })?;
            Ok((id, *event))
        }
        // clap's argument group requires --entry, or --event with --bib.
        _ => Err(AdminError::Conflict(
            "name the entry with --entry <ID>, or with --event <ID> and --bib <BIB>".into(),
        )),
    }
}
