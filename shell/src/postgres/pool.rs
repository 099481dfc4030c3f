//! A deadpool-postgres pool with every timeout set: deadpool has none by default, and a
//! `get()` that waits forever would hang the durable writer during an outage.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::{Config, DatabaseSettings};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("DATABASE_URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot build the Postgres pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("cannot connect to Postgres: {0}")]
    Connect(#[source] tokio_postgres::Error),
}

fn pg_config(url: &str, db: &DatabaseSettings) -> Result<tokio_postgres::Config, PoolError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(PoolError::Url)?;
    config.connect_timeout(Duration::from_millis(db.connect_timeout_ms));
    // Keep any options the URL carries (tests put a search_path there) and add ours.
    let options = format!(
        "{} -c statement_timeout={}",
        config.get_options().unwrap_or_default(),
        db.statement_timeout_ms
    );
    config.options(options.trim());
    config.application_name("processor");
    Ok(config)
}

pub fn create_pool(config: &Config) -> Result<Pool, PoolError> {
    let db = &config.database;
    let manager = Manager::from_config(
        pg_config(&config.database_url, db)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let connect = Duration::from_millis(db.connect_timeout_ms);
    Ok(Pool::builder(manager)
        .max_size(db.pool_size as usize)
        .wait_timeout(Some(Duration::from_millis(db.pool_wait_timeout_ms)))
        .create_timeout(Some(connect))
        .recycle_timeout(Some(connect))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// A single connection outside the pool, for `processor migrate`.
pub async fn connect_one(config: &Config) -> Result<tokio_postgres::Client, PoolError> {
    let (client, connection) = pg_config(&config.database_url, &config.database)?
        .connect(NoTls)
        .await
        .map_err(PoolError::Connect)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}
