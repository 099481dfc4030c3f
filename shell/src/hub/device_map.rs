//! Reloads the device-to-event map every `LIVE_DEVICE_EVENT_REFRESH_MS`.
//!
//! `loaded` turns true once the first map is on its way to the hub: the broadcast consumer
//! waits for it, since a position read before the hub has any map could be routed nowhere
//! (and would be counted as an orphan).

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::ports::LiveStore;
use super::HubInput;

pub async fn run<S: LiveStore>(
    store: S,
    every: Duration,
    hub: mpsc::UnboundedSender<HubInput>,
    loaded: watch::Sender<bool>,
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
                loaded.send_replace(true);
            }
            Err(error) => {
                tracing::warn!(%error, "reloading the device-to-event map failed; keeping the last one")
            }
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
