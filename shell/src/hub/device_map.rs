//! Reloads the device-to-event map every `LIVE_DEVICE_EVENT_REFRESH_MS`.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch};

use crate::postgres::events;

use super::HubInput;

pub async fn run(
    pool: Pool,
    every: Duration,
    hub: mpsc::UnboundedSender<HubInput>,
    mut stop: watch::Receiver<bool>,
) {
    let mut version = 0u64;
    loop {
        match events::load_device_map(&pool).await {
            Ok(map) => {
                version += 1;
                if hub.send(HubInput::DeviceMap { version, map }).is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reloading the device-to-event map failed; keeping the last one")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
