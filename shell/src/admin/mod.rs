//! `processor admin`: events, entries, device assignments and start lists, written straight
//! to Postgres. The rules about the values are the core's (`processor_core::admin`); this
//! module runs the statements, each command in one transaction.
//!
//! The live service needs no signal: its device map is re-read every
//! `LIVE_DEVICE_EVENT_REFRESH_MS` and visibility within its cache's lifetime.

pub mod cli;
mod csv_import;
mod devices;
mod entries;
mod error;
mod events;
mod output;

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::NoTls;

pub use cli::AdminArgs;
pub use error::AdminError;

use cli::{AdminCommand, DeviceCommand, EntryCommand, EventCommand};

/// A command run by hand fails rather than hangs when Postgres does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the service's default: an import of a long start list is one transaction.
const STATEMENT_TIMEOUT_MS: u64 = 60_000;

/// Runs one admin command and prints its result on stdout.
pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let mut client = connect(&args).await?;
    match args.command {
        AdminCommand::Event(EventCommand::Create(create)) => {
            let id = events::create(&mut client, &create).await?;
            output::id(id);
        }
        AdminCommand::Event(EventCommand::List(format)) => {
            let list = events::list(&client).await?;
            output::events(&list, format.json);
        }
        AdminCommand::Event(EventCommand::Update(update)) => {
            let id = events::update(&mut client, &update).await?;
            output::id(id);
        }
        AdminCommand::Entry(EntryCommand::Create(create)) => {
            let id = entries::create(&mut client, &create).await?;
            output::id(id);
        }
        AdminCommand::Entry(EntryCommand::List(list)) => {
            let details = entries::list(&client, list.event).await?;
            output::entries(&details, list.format.json);
        }
        AdminCommand::Entry(EntryCommand::Update(update)) => {
            let id = entries::update(&mut client, &update).await?;
            output::id(id);
        }
        AdminCommand::Device(DeviceCommand::Assign(assign)) => {
            let done = devices::assign(&mut client, &assign, devices::Mode::Assign).await?;
            output::assignment(&assign.device, &done);
        }
        AdminCommand::Device(DeviceCommand::Move(assign)) => {
            let done = devices::assign(&mut client, &assign, devices::Mode::Move).await?;
            output::assignment(&assign.device, &done);
        }
        AdminCommand::Device(DeviceCommand::Unassign(unassign)) => {
            let from = devices::unassign(&mut client, unassign.event, &unassign.device).await?;
            output::unassigned(&unassign.device, from);
        }
        AdminCommand::Import(import) => {
            let summary = csv_import::import(&mut client, import.event, &import.file).await?;
            output::import_summary(&summary);
        }
    }
    Ok(())
}

async fn connect(args: &AdminArgs) -> Result<tokio_postgres::Client, AdminError> {
    let mut config = tokio_postgres::Config::from_str(&args.database_url)
        .map_err(|e| AdminError::DatabaseUrl(e.to_string()))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let options = format!(
        "{} -c statement_timeout={}",
        config.get_options().unwrap_or_default(),
        STATEMENT_TIMEOUT_MS
    );
    config.options(options.trim());
    config.application_name("processor-admin");
    let (client, connection) = config.connect(NoTls).await.map_err(AdminError::Connect)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}
