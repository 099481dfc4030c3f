//! The allow-list (`GATEWAY_ACCEPT_UNKNOWN_DEVICES=false`): every `device_id` of
//! `entry_devices`, read again every `LIVE_DEVICE_EVENT_REFRESH_MS`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::NoTls;

use processor_core::teltonika::AllowList;

use super::metrics::GatewayMetrics;
use crate::causes::with_causes;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect to Postgres: {}", with_causes(&e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(
                error = with_causes(&error),
                "allow-list: Postgres connection ended"
            );
        }
    });
    Ok(client)
}

async fn read_devices(client: &tokio_postgres::Client) -> Result<HashSet<String>, String> {
    let rows = tokio::time::timeout(
        QUERY_TIMEOUT,
        client.query("SELECT DISTINCT device_id FROM entry_devices", &[]),
    )
    .await
    .map_err(|_| "reading entry_devices timed out".to_owned())?
    .map_err(|e| format!("cannot read entry_devices: {}", with_causes(&e)))?;
    Ok(rows.iter().filter_map(|row| row.try_get(0).ok()).collect())
}

/// Publishes the list from Postgres every `every` until `stop`; until the first read the
/// list is empty (every device refused) and `/readyz` says so.
pub async fn refresh(
    database_url: String,
    every: Duration,
    publish: watch::Sender<Arc<AllowList>>,
    metrics: Arc<GatewayMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut config: tokio_postgres::Config = match database_url.parse() {
        Ok(config) => config,
        Err(error) => {
            // Checked at start-up; only reached if that check and this parse disagree.
            tracing::error!(%error, "DATABASE_URL cannot be parsed; the allow-list stays empty");
            return;
        }
    };
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("processor-gateway");
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect(&config)
                .await
                .inspect_err(|error| {
                    tracing::warn!(%error, "cannot refresh the allow-list; keeping the last one")
                })
                .ok();
        }
        if let Some(c) = &client {
            match read_devices(c).await {
                Ok(devices) => {
                    tracing::debug!(devices = devices.len(), "allow-list read");
                    publish.send_replace(Arc::new(AllowList::Only(devices)));
                    metrics.set_allow_list_read();
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot refresh the allow-list; keeping the last one");
                    client = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
