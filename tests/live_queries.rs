//! The live path's Postgres queries against a real Postgres.

mod support;
