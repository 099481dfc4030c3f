//! `processor admin import`: a CSV start list into an event, in one transaction.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use tokio_postgres::Client;
use uuid::Uuid;

use processor_core::admin::{listed_entry, ListedEntry, StartList, START_LIST_DEVICES};

use super::devices::{self, Assigned};
use super::{events, AdminError};

/// Largest file read: 10,000 rows of bib, a long name and a device id fit several times.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// What an import did; all zero but `unchanged` when the same file is imported again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    pub entries_created: u64,
    pub entries_renamed: u64,
    pub entries_unchanged: u64,
    pub devices_assigned: u64,
    pub devices_moved: u64,
    pub devices_unchanged: u64,
}

pub async fn import(
    client: &mut Client,
    event: Uuid,
    path: &Path,
) -> Result<ImportSummary, AdminError> {
    let shown = path.display().to_string();
    let bytes = read(path).map_err(|source| AdminError::ReadFile {
        path: shown.clone(),
        source,
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(AdminError::Csv {
            path: shown,
            problem: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let list = parse(&bytes).map_err(|problem| AdminError::Csv {
        path: shown.clone(),
        problem,
    })??;

    let tx = client.transaction().await?;
    events::lock(&tx, event).await?;
    let mut existing: BTreeMap<String, (Uuid, Option<String>)> = BTreeMap::new();
    for row in tx
        .query(
            "SELECT bib, id, name FROM entries WHERE event_id = $1 AND bib IS NOT NULL",
            &[&event],
        )
        .await?
    {
        existing.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
    }
    let mut summary = ImportSummary::default();
    for entry in &list.entries {
        let holder = existing
            .get(&entry.bib)
            .map(|(id, name)| (*id, name.as_deref()));
        let id = match listed_entry(holder, entry.name.as_deref()) {
            ListedEntry::Unchanged(id) => {
                summary.entries_unchanged += 1;
                id
            }
            ListedEntry::Renamed(id) => {
                tx.execute(
                    "UPDATE entries SET name = $2 WHERE id = $1",
                    &[&id, &entry.name],
                )
                .await?;
                summary.entries_renamed += 1;
                id
            }
            ListedEntry::Created => {
                let row = tx
                    .query_one(
                        "INSERT INTO entries (id, event_id, name, bib)
                         VALUES (gen_random_uuid(), $1, $2, $3) RETURNING id",
                        &[&event, &entry.name, &entry.bib],
                    )
                    .await?;
                summary.entries_created += 1;
                row.try_get(0)?
            }
        };
        for device in &entry.devices {
            match devices::put(&tx, event, id, device, START_LIST_DEVICES).await? {
                Assigned::New { .. } => summary.devices_assigned += 1,
                Assigned::Moved { .. } => summary.devices_moved += 1,
                Assigned::Unchanged { .. } => summary.devices_unchanged += 1,
            }
        }
    }
    tx.commit().await?;
    Ok(summary)
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // One byte over the limit is enough to tell that the file is too large.
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// The CSV's records with their line numbers, checked by the core. The outer error is a
/// file that is not CSV at all (e.g. not UTF-8), the inner one what the core found wrong.
fn parse(bytes: &[u8]) -> Result<Result<StartList, processor_core::admin::StartListError>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // The core reports rows of the wrong width with their line; csv would stop at the first.
        .flexible(true)
        .from_reader(bytes);
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_problem(&e))?;
        let line = record.position().map_or(0, |p| p.line());
        let cells: Vec<String> = record.iter().map(str::to_owned).collect();
        match header {
            None => header = Some(cells),
            Some(_) => rows.push((line, cells)),
        }
    }
    let Some(header) = header else {
        return Err("the file is empty; it needs a header row (bib,name,device_id)".into());
    };
    Ok(StartList::parse(&header, &rows))
}

fn csv_problem(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { pos: Some(pos), .. } => {
            format!(
                "line {}: not UTF-8 text (save the file as CSV UTF-8)",
                pos.line()
            )
        }
        _ => match error.position() {
            Some(pos) => format!("line {}: {error}", pos.line()),
            None => error.to_string(),
        },
    }
}
