//! Redis connections with the timeouts this service needs.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError};

/// Every command but blocking reads is expected back within this time.
pub const CONTROL_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Headroom above BLOCK: the reply of a blocking read must never time out on the client
/// while the server may still deliver it (that would strand the entries as pending).
const BLOCK_MARGIN: Duration = Duration::from_secs(5);

/// A connection of its own for blocking reads: on a shared one, a blocking XREADGROUP would
/// hold up every other command queued behind it.
pub async fn blocking_connection(
    client: &Client,
    block: Duration,
) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(block + BLOCK_MARGIN));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The shared connection for acks, claims and dead letters; reconnects by itself.
pub async fn control_connection(client: Client) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONTROL_RESPONSE_TIMEOUT))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client, config).await
}
