//! Reloads the device-to-event map every `LIVE_DEVICE_EVENT_REFRESH_MS`.
//!
//! Each map is indexed once and shared: the shards get it in their queues (so it takes
//! effect between two of their inputs), the broadcast consumer through `latest`, which it
//! waits on before its first read, since a position read before there is any map could be
//! routed nowhere (and would be counted as an orphan).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use processor_core::live::{DeviceMap, Input};

use super::input::Shards;
use super::ports::LiveStore;

pub async fn run<S: LiveStore>(
    store: S,
    every: Duration,
    shards: Shards,
    latest: watch::Sender<Option<Arc<DeviceMap>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut version = 0u64;
    loop {
        match store.device_map().await {
            Ok(map) => {
                version += 1;
                let map = Arc::new(DeviceMap::new(version, map));
                if !shards.broadcast(|| Input::DeviceMap(map.clone())) {
                    return;
                }
                latest.send_replace(Some(map));
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
