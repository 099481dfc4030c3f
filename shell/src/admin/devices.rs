//! `processor admin device ...`: a device is in at most one entry of an event at a time.
//!
//! Every change locks the event's row first ([`events::lock`]), so two concurrent commands
//! on the same event take turns and cannot both put one device in two entries. The tables
//! alone cannot say it (entry_devices has no event column); writers other than these
//! commands (hand-written SQL) are not held to the rule.

use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use processor_core::admin::{place_device, Placement};

use super::cli::DeviceAssign;
use super::{entries, events, AdminError};

pub use processor_core::admin::AssignMode as Mode;

/// What an assignment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigned {
    New { entry: Uuid },
    Moved { from: Uuid, entry: Uuid },
    Unchanged { entry: Uuid },
}

pub async fn assign(
    client: &mut Client,
    assign: &DeviceAssign,
    mode: Mode,
) -> Result<Assigned, AdminError> {
    let tx = client.transaction().await?;
    let (entry, event) = entries::resolve(&tx, &assign.entry).await?;
    let done = put(&tx, event, entry, &assign.device, mode).await?;
    tx.commit().await?;
    Ok(done)
}

/// Puts `device` in `entry` of `event`, whose row the transaction has locked.
pub async fn put(
    tx: &Transaction<'_>,
    event: Uuid,
    entry: Uuid,
    device: &str,
    mode: Mode,
) -> Result<Assigned, AdminError> {
    let holder = holder(tx, event, device).await?;
    let done = match place_device(entry, holder, mode) {
        Placement::Unchanged => return Ok(Assigned::Unchanged { entry }),
        Placement::Conflict { holder } => {
            return Err(AdminError::Conflict(format!(
                "device {device} is already in entry {holder} of event {event}; \
                 a device is in one entry of an event at a time: \
                 use `processor admin device move` to move it"
            )))
        }
        Placement::Moved { from } => {
            tx.execute(
                "DELETE FROM entry_devices WHERE entry_id = $1 AND device_id = $2",
                &[&from, &device],
            )
            .await?;
            Assigned::Moved { from, entry }
        }
        Placement::New => Assigned::New { entry },
    };
    tx.execute(
        "INSERT INTO entry_devices (entry_id, device_id) VALUES ($1, $2)",
        &[&entry, &device],
    )
    .await?;
    Ok(done)
}

/// The entry of `event` that has `device`, if any.
async fn holder(
    tx: &Transaction<'_>,
    event: Uuid,
    device: &str,
) -> Result<Option<Uuid>, AdminError> {
    let row = tx
        .query_opt(
            "SELECT ed.entry_id FROM entry_devices ed JOIN entries en ON en.id = ed.entry_id
             WHERE en.event_id = $1 AND ed.device_id = $2
             LIMIT 1",
            &[&event, &device],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Takes `device` out of the event's entries; returns the entry that had it.
pub async fn unassign(
    client: &mut Client,
    event: Uuid,
    device: &str,
) -> Result<Option<Uuid>, AdminError> {
    let tx = client.transaction().await?;
    events::lock(&tx, event).await?;
    let rows = tx
        .query(
            "DELETE FROM entry_devices ed USING entries en
             WHERE en.id = ed.entry_id AND en.event_id = $1 AND ed.device_id = $2
             RETURNING ed.entry_id",
            &[&event, &device],
        )
        .await?;
    tx.commit().await?;
    match rows.first() {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}
