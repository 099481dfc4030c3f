//! The broadcast consumer group of one instance (contract section 6).
//!
//! Every instance has a group of its own, `{prefix}-{instance}`, created at `$`, so that each
//! sees every record from the moment it starts. Reads use NOACK: a live position is worth
//! nothing later, and entries never pile up in a pending list. A heartbeat key with a TTL
//! says the instance is alive; groups whose heartbeat has expired belong to dead instances
//! and are removed, since Redis keeps a group (and the stream's memory of it) forever.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisError, Value};

use processor_core::live::group_sweep::{dead_groups, group_name, sweep_candidates};

use super::group::{create_group, stream_groups, StreamError};
use super::reply::{self, RawEntry};

#[derive(Debug, Clone)]
pub struct BroadcastGroup {
    pub stream: String,
    pub prefix: String,
    pub instance: String,
}

impl BroadcastGroup {
    pub fn group(&self) -> String {
        group_name(&self.prefix, &self.instance)
    }

    fn heartbeat_key_of(&self, instance: &str) -> String {
        format!("{}:{}:heartbeat:{}", self.stream, self.prefix, instance)
    }

    pub fn heartbeat_key(&self) -> String {
        self.heartbeat_key_of(&self.instance)
    }

    /// Sets this instance's heartbeat, valid for `ttl`.
    pub async fn heartbeat<C: ConnectionLike>(
        &self,
        conn: &mut C,
        ttl: Duration,
    ) -> Result<(), StreamError> {
        let _: Value = redis::cmd("SET")
            .arg(self.heartbeat_key())
            .arg(&self.instance)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Creates the group at `$` unless it exists. Call after the first heartbeat, so that no
    /// other instance takes the new group for a dead one.
    pub async fn create<C: ConnectionLike>(&self, conn: &mut C) -> Result<(), StreamError> {
        create_group(conn, &self.stream, &self.group(), "$").await
    }

    /// One blocking read of new entries, without acknowledgement bookkeeping (NOACK). A
    /// missing group (Redis restarted) is created again before the error is returned; the
    /// positions in between are lost to this instance's live clients, who resynchronise
    /// from the next positions (and from snapshots when they subscribe).
    pub async fn read<C: ConnectionLike>(
        &self,
        conn: &mut C,
        count: usize,
        block: Duration,
    ) -> Result<Vec<RawEntry>, StreamError> {
        let read: Result<Value, RedisError> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.group())
            .arg(&self.instance)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("NOACK")
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(conn)
            .await;
        match read {
            Ok(value) => Ok(reply::read_reply(&value)?),
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    self.create(conn).await?;
                }
                Err(e.into())
            }
        }
    }

    /// Destroys the broadcast groups of instances whose heartbeat has expired; returns their
    /// names. Which groups those are is the core's rule (`group_sweep`); this instance's own
    /// group is never one.
    pub async fn remove_dead_groups<C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<String>, StreamError> {
        let names: Vec<String> = stream_groups(conn, &self.stream)
            .await?
            .into_iter()
            .map(|g| g.name)
            .collect();
        let candidates = sweep_candidates(&names, &self.prefix, &self.instance);
        let mut alive = Vec::with_capacity(candidates.len());
        for candidate in &candidates {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(self.heartbeat_key_of(candidate.instance))
                .query_async(conn)
                .await?;
            alive.push(exists != 0);
        }
        let mut removed = Vec::new();
        for group in dead_groups(&candidates, &alive) {
            let _: Value = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&self.stream)
                .arg(group)
                .query_async(conn)
                .await?;
            removed.push(group.to_owned());
        }
        Ok(removed)
    }

    /// On clean shutdown: the group and the heartbeat go.
    pub async fn destroy<C: ConnectionLike>(&self, conn: &mut C) -> Result<(), StreamError> {
        let _: Value = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(&self.stream)
            .arg(self.group())
            .query_async(conn)
            .await?;
        let _: Value = redis::cmd("DEL")
            .arg(self.heartbeat_key())
            .query_async(conn)
            .await?;
        Ok(())
    }
}
