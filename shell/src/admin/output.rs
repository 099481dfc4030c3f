//! What the admin commands print on stdout: ids alone on a line, tables for people, JSON for
//! scripts.

use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::event_route::{event_json, rfc3339};
use crate::postgres::events::EventDetails;

use super::csv_import::ImportSummary;
use super::devices::Assigned;
use super::events::EventRow;

pub fn id(id: Uuid) {
    println!("{id}");
}

fn time(t: Option<OffsetDateTime>) -> Option<String> {
    rfc3339(t)
}

pub fn events(list: &[EventRow], as_json: bool) {
    if as_json {
        let list: Vec<Value> = list
            .iter()
            .map(|e| {
                json!({
                    "id": e.id.to_string(), "name": e.name, "visibility": e.visibility,
                    "starts_at": time(e.starts_at), "ends_at": time(e.ends_at),
                    "entries": e.entries,
                })
            })
            .collect();
        println!("{}", Value::Array(list));
        return;
    }
    println!("id\tvisibility\tstarts_at\tends_at\tentries\tname");
    for e in list {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            e.id,
            e.visibility,
            time(e.starts_at).unwrap_or_else(|| "-".into()),
            time(e.ends_at).unwrap_or_else(|| "-".into()),
            e.entries,
            e.name
        );
    }
}

pub fn entries(event: &EventDetails, as_json: bool) {
    if as_json {
        println!("{}", event_json(event));
        return;
    }
    println!("id\tbib\tdevices\tname");
    for e in &event.entries {
        println!(
            "{}\t{}\t{}\t{}",
            e.id,
            e.bib.as_deref().unwrap_or("-"),
            if e.devices.is_empty() {
                "-".to_owned()
            } else {
                e.devices.join(",")
            },
            e.name.as_deref().unwrap_or("-")
        );
    }
    if event.truncated {
        eprintln!(
            "(only the first {} entries are listed)",
            event.entries.len()
        );
    }
}

pub fn assignment(device: &str, done: &Assigned) {
    match done {
        Assigned::New { entry } => println!("assigned {device} to entry {entry}"),
        Assigned::Moved { from, entry } => {
            println!("moved {device} from entry {from} to entry {entry}")
        }
        Assigned::Unchanged { entry } => println!("unchanged: {device} is in entry {entry}"),
    }
}

pub fn unassigned(device: &str, from: Option<Uuid>) {
    match from {
        Some(entry) => println!("unassigned {device} from entry {entry}"),
        None => println!("unchanged: {device} is in no entry of the event"),
    }
}

pub fn import_summary(summary: &ImportSummary) {
    println!("{}", json!(summary));
}
