//! The processor's shell: configuration, logging and the executors that run the core's
//! state machines against Redis, Postgres and WebSockets. No business rule lives here.

pub mod admin;
pub mod auth;
pub mod causes;
pub mod clock;
pub mod config;
pub mod durable;
pub mod edge;
pub mod gateway;
pub mod health;
pub mod http;
pub mod instance;
pub mod live;
pub mod logging;
pub mod map_page;
pub mod metrics;
pub mod migrate;
pub mod ops_server;
pub mod postgres;
pub mod readiness;
pub mod redis_stream;
pub mod service;
pub mod stop_signal;
pub mod trimmer;
