//! What can go wrong in an admin command, each told so that the user knows what to change.

use uuid::Uuid;

use processor_core::admin::{StartListError, WindowError};

use crate::causes::with_causes;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(String),
    #[error("cannot connect to Postgres: {}", with_causes(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("Postgres: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no event {0}")]
    NoEvent(Uuid),
    #[error("no entry {0}")]
    NoEntry(Uuid),
    #[error("event {event} has no entry with bib {bib}")]
    NoBib { event: Uuid, bib: String },
    /// The change contradicts what is stored; the text says what and how to proceed.
    #[error("{0}")]
    Conflict(String),
    #[error("nothing to change: give at least one of {0}")]
    NothingToChange(&'static str),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    StartList(#[from] StartListError),
    #[error("cannot read the start list {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the start list {path} is not valid CSV: {problem}")]
    Csv { path: String, problem: String },
}

/// The server's own message when there is one, with a hint when the schema is missing.
fn describe(error: &tokio_postgres::Error) -> String {
    // The server's words (with its DETAIL and HINT) say it all; "db error" adds nothing.
    let text = match error.as_db_error() {
        Some(db) => db.to_string().replace('\n', "; "),
        None => with_causes(error),
    };
    let missing_schema = error.code().is_some_and(|code| {
        *code == tokio_postgres::error::SqlState::UNDEFINED_TABLE
            || *code == tokio_postgres::error::SqlState::UNDEFINED_COLUMN
    });
    if missing_schema {
        format!("{text} (has `processor migrate` been run on this database?)")
    } else {
        text
    }
}
