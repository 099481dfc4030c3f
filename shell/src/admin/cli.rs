//! `processor admin ...`: the organizer's command line.
//!
//! Values are checked by the core's rules while clap parses them, so that a bad value is
//! refused before anything is connected, with clap's message naming the flag.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use time::OffsetDateTime;
use uuid::Uuid;

use processor_core::admin::{
    parse_bib, parse_device_id, parse_entry_name, parse_event_name, parse_time, EventVisibility,
};

/// Set up events, their entries (participants) and the devices they carry.
///
/// Needs only DATABASE_URL; migrations must have been applied
/// (`processor migrate`). Ids are printed on stdout, one per line, so that scripts can
/// capture them; `list` prints a table, or JSON with `--json`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Postgres connection string (URL or key=value form). Prefer the variable when it
    /// carries a password: a flag is visible to other users in `ps`.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,

    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Create, list and update events.
    #[command(subcommand)]
    Event(EventCommand),
    /// Create, list and update entries (participants, vehicles, crews) of an event.
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Assign devices to entries, move them between entries, unassign them.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Import a start list (CSV with a header row: bib,name,device_id) into an event.
    ///
    /// Entries are matched by bib within the event: a new bib creates an entry, a known one
    /// gets the name the list gives; each device is assigned to its bib's entry (moved there
    /// if another entry of the event had it). Nothing is deleted. Running the same file
    /// again changes nothing. The whole file is checked first and imported in one
    /// transaction: on any error nothing is imported, and every error names its line and
    /// column.
    Import(ImportArgs),
}

#[derive(Debug, Clone, Subcommand)]
pub enum EventCommand {
    /// Create an event and print its id. With `--id`, running it again with the same values
    /// changes nothing.
    Create(EventCreate),
    /// List every event (public and private).
    List(ListFormat),
    /// Change an event's name, visibility or time window; prints its id.
    Update(EventUpdate),
}

#[derive(Debug, Clone, Args)]
pub struct EventCreate {
    /// The event's name, as spectators see it.
    #[arg(long, value_parser = parse_event_name)]
    pub name: String,
    /// `public`: anyone may follow it; `private`: only tokens that grant it.
    #[arg(long, default_value = "public", value_parser = parse_visibility)]
    pub visibility: EventVisibility,
    /// When it starts (RFC 3339, e.g. 2026-05-01T09:00:00+03:00).
    #[arg(long, value_parser = parse_starts_at)]
    pub starts_at: Option<OffsetDateTime>,
    /// When it ends (RFC 3339); after --starts-at.
    #[arg(long, value_parser = parse_ends_at)]
    pub ends_at: Option<OffsetDateTime>,
    /// The event's id [default: a new random UUID].
    #[arg(long)]
    pub id: Option<Uuid>,
}

#[derive(Debug, Clone, Args)]
pub struct EventUpdate {
    /// The event's id.
    pub event: Uuid,
    #[arg(long, value_parser = parse_event_name)]
    pub name: Option<String>,
    #[arg(long, value_parser = parse_visibility)]
    pub visibility: Option<EventVisibility>,
    #[arg(long, value_parser = parse_starts_at, conflicts_with = "clear_starts_at")]
    pub starts_at: Option<OffsetDateTime>,
    /// Remove the start time.
    #[arg(long)]
    pub clear_starts_at: bool,
    #[arg(long, value_parser = parse_ends_at, conflicts_with = "clear_ends_at")]
    pub ends_at: Option<OffsetDateTime>,
    /// Remove the end time.
    #[arg(long)]
    pub clear_ends_at: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ListFormat {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EntryCommand {
    /// Add an entry to an event and print its id. Running it again with the same values
    /// (same `--id`, or same bib in the event) changes nothing.
    Create(EntryCreate),
    /// List an event's entries with their devices.
    List(EntryList),
    /// Change an entry's name or bib; prints its id.
    Update(EntryUpdate),
}

#[derive(Debug, Clone, Args)]
pub struct EntryCreate {
    /// The event's id.
    #[arg(long)]
    pub event: Uuid,
    /// The participant's (or vehicle's, crew's) name.
    #[arg(long, value_parser = parse_entry_name)]
    pub name: Option<String>,
    /// Bib number, unique within the event.
    #[arg(long, value_parser = parse_bib)]
    pub bib: Option<String>,
    /// The entry's id [default: a new random UUID].
    #[arg(long)]
    pub id: Option<Uuid>,
}

#[derive(Debug, Clone, Args)]
pub struct EntryList {
    /// The event's id.
    #[arg(long)]
    pub event: Uuid,
    #[command(flatten)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct EntryUpdate {
    #[command(flatten)]
    pub entry: EntryRef,
    #[arg(long, value_parser = parse_entry_name, conflicts_with = "clear_name")]
    pub name: Option<String>,
    /// Remove the name.
    #[arg(long)]
    pub clear_name: bool,
    /// The new bib (the entry is found by --entry, or by --event and --bib).
    #[arg(long, value_parser = parse_bib, conflicts_with = "clear_bib")]
    pub new_bib: Option<String>,
    /// Remove the bib.
    #[arg(long)]
    pub clear_bib: bool,
}

/// An entry, by id or by bib within its event.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = true)]
pub struct EntryRef {
    /// The entry's id.
    #[arg(long, conflicts_with_all = ["event", "bib"])]
    pub entry: Option<Uuid>,
    /// The entry's event (with --bib).
    #[arg(long, requires = "bib")]
    pub event: Option<Uuid>,
    /// The entry's bib within --event.
    #[arg(long, requires = "event", value_parser = parse_bib)]
    pub bib: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeviceCommand {
    /// Put a device in an entry. Refused when another entry of the same event has it (use
    /// `move`); nothing changes when this entry has it already.
    Assign(DeviceAssign),
    /// Put a device in an entry, taking it from whichever entry of the same event had it.
    Move(DeviceAssign),
    /// Take a device out of whichever entry of the event has it (nothing to do is fine).
    Unassign(DeviceUnassign),
}

#[derive(Debug, Clone, Args)]
pub struct DeviceAssign {
    #[command(flatten)]
    pub entry: EntryRef,
    /// The device id, as the tracker reports it (its IMEI).
    #[arg(value_parser = parse_device_id)]
    pub device: String,
}

#[derive(Debug, Clone, Args)]
pub struct DeviceUnassign {
    /// The event's id.
    #[arg(long)]
    pub event: Uuid,
    /// The device id.
    #[arg(value_parser = parse_device_id)]
    pub device: String,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The event's id.
    #[arg(long)]
    pub event: Uuid,
    /// The CSV file; `-` reads standard input.
    pub file: PathBuf,
}

fn parse_visibility(value: &str) -> Result<EventVisibility, String> {
    value
        .parse()
        .map_err(|e: processor_core::admin::FieldError| e.to_string())
}

fn parse_starts_at(value: &str) -> Result<OffsetDateTime, String> {
    parse_time("--starts-at", value).map_err(|e| e.to_string())
}

fn parse_ends_at(value: &str) -> Result<OffsetDateTime, String> {
    parse_time("--ends-at", value).map_err(|e| e.to_string())
}
