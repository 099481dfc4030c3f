//! Postgres: the connection pool and the positions store.

pub mod events;
pub mod history;
pub mod pool;
pub mod position_row;
pub mod positions;
pub mod replay;
pub mod tracks;

pub use pool::{connect_one, create_pool, PoolError};
pub use positions::PositionStore;
