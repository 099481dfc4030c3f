//! `processor migrate`: applies the SQL files of `migrations/`, each once, in order.
//!
//! The files are compiled into the binary so a deployed processor needs nothing beside it.
//! Applied versions are recorded in `schema_migrations`; an advisory lock keyed on the
//! current schema makes concurrent starts of several instances take turns.

use tokio_postgres::Client;

/// One numbered SQL file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in the order they apply. A test checks this list against the folder.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial.sql",
        sql: include_str!("../../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "0002_latest_from_the_positions_key.sql",
        sql: include_str!("../../migrations/0002_latest_from_the_positions_key.sql"),
    },
    Migration {
        version: 3,
        name: "0003_event_window_and_bibs.sql",
        sql: include_str!("../../migrations/0003_event_window_and_bibs.sql"),
    },
];

/// First key of the advisory lock; the second is the schema's hash.
const LOCK_CLASS: i32 = 0x5052_4f43; // "PROC"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("could not take the migration lock: {0}")]
    Lock(#[source] tokio_postgres::Error),
    #[error("could not read or create schema_migrations: {0}")]
    Bookkeeping(#[source] tokio_postgres::Error),
    #[error("migration {name} failed: {source}")]
    Apply {
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Applies every pending migration and returns the names of those it applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<&'static str>, MigrateError> {
    client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext(current_schema()))",
            &[&LOCK_CLASS],
        )
        .await
        .map_err(MigrateError::Lock)?;
    let result = apply_pending(client).await;
    // The lock is session-scoped: released here, or by the server when the connection ends.
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext(current_schema()))",
            &[&LOCK_CLASS],
        )
        .await;
    result
}

async fn apply_pending(client: &mut Client) -> Result<Vec<&'static str>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     bigint PRIMARY KEY,
                name        text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(MigrateError::Bookkeeping)?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(MigrateError::Bookkeeping)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        let apply_err = |source| MigrateError::Apply {
            name: migration.name,
            source,
        };
        let tx = client.transaction().await.map_err(apply_err)?;
        tx.batch_execute(migration.sql).await.map_err(apply_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(apply_err)?;
        tx.commit().await.map_err(apply_err)?;
        done.push(migration.name);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn every_file_in_the_folder_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations folder is readable")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{} is out of sequence", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
