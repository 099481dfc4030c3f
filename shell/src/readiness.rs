//! What `/readyz` reports: Redis and Postgres reachable, and the consumers running.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Readiness {
    redis: AtomicBool,
    postgres: AtomicBool,
    durable_consumer: AtomicBool,
    broadcast_consumer: AtomicBool,
}

impl Readiness {
    pub fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::Relaxed);
    }

    pub fn set_postgres(&self, up: bool) {
        self.postgres.store(up, Ordering::Relaxed);
    }

    pub fn set_durable_consumer(&self, running: bool) {
        self.durable_consumer.store(running, Ordering::Relaxed);
    }

    pub fn set_broadcast_consumer(&self, running: bool) {
        self.broadcast_consumer.store(running, Ordering::Relaxed);
    }

    /// The parts that are not ready, by name; empty when ready.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.redis.load(Ordering::Relaxed) {
            missing.push("redis");
        }
        if !self.postgres.load(Ordering::Relaxed) {
            missing.push("postgres");
        }
        if !self.durable_consumer.load(Ordering::Relaxed) {
            missing.push("durable consumer");
        }
        if !self.broadcast_consumer.load(Ordering::Relaxed) {
            missing.push("broadcast consumer");
        }
        missing
    }
}
