//! At start-up the processor raises its open-files soft limit to the hard limit; when that
//! is still too low for the connection cap (`LIVE_WS_MAX_CONNECTIONS`, `GATEWAY_MAX_CONNECTIONS`) plus its own needs, the cap is lowered to
//! fit, and the log says so.

/// Descriptors kept for everything but WebSockets: listeners, Redis and Postgres
/// connections, HTTP requests in progress, files.
pub const RESERVED: u64 = 256;

/// Raises the soft limit as far as allowed; returns the WebSocket cap that fits in it.
pub fn fit_connections(wanted: usize, variable: &'static str) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-files limit");
            return wanted;
        }
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED)).unwrap_or(usize::MAX);
    if fits < wanted {
        let cap = fits.max(1);
        tracing::warn!(
            open_files_limit = limit,
            wanted,
            cap,
            variable,
            "the open-files limit is too low for the connection cap; lowering the cap to fit"
        );
        return cap;
    }
    wanted
}
