//! Reloads the device-to-event map every `LIVE_DEVICE_EVENT_REFRESH_MS`.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::ports::LiveStore;
use super::HubInput;

pub async fn run<S: LiveStore>(
    store: S,
    every: Duration,
    hub: mpsc::UnboundedSender<HubInput>,
    mut stop: watch::Receiver<bool>,
) {
    let mut version = 0u64;
    loop {
        match store.device_map().await {
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
