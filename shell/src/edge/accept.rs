//! Accept errors (out of file descriptors or memory) never spin: the listener waits, at
//! least 10 ms and longer after each failure in a row, logs at most once a second, and
//! counts every failure. Connections already open are unaffected.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::Listener;

const FIRST_WAIT: Duration = Duration::from_millis(10);
const LONGEST_WAIT: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

pub struct AcceptBackoff {
    listener: &'static str,
    errors: Counter,
    wait: Duration,
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl AcceptBackoff {
    pub fn new(listener: &'static str, errors: Counter) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            errors,
            wait: FIRST_WAIT,
            logged_at: None,
            unlogged: 0,
        }
    }

    /// A connection was accepted: the next failure waits the shortest time again.
    pub fn accepted(&mut self) {
        self.wait = FIRST_WAIT;
    }

    /// An accept failed: counted, logged unless one was logged within the second, then
    /// waited out (doubling up to a second while failures go on).
    pub async fn failed(&mut self, error: &std::io::Error) {
        self.errors.inc();
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            tracing::warn!(
                listener = self.listener,
                %error,
                failures = self.unlogged,
                retry_in_ms = self.wait.as_millis() as u64,
                "accept failed (out of file descriptors or memory?); waiting before the next"
            );
            self.logged_at = Some(now);
            self.unlogged = 0;
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
    }
}

/// The next connection `listener` accepts, failures waited out by `backoff`; `None` once
/// `stop` turns true.
pub async fn next_connection<L: Listener>(
    listener: &mut L,
    backoff: &mut AcceptBackoff,
    stop: &mut watch::Receiver<bool>,
) -> Option<L::Io> {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(io) => {
                backoff.accepted();
                return Some(io);
            }
            Err(error) => {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return None,
                    () = backoff.failed(&error) => {}
                }
            }
        }
    }
}
