//! The durable consumer group's commands.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, Value};

use processor_core::durable::{ClaimResult, DeadLetter, ReadFrom};
use processor_core::stream::{EntryId, StreamEntry};

use super::reply::{self, RawEntry, ReplyError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

/// Names of the stream, the group and this consumer.
#[derive(Debug, Clone)]
pub struct DurableStream {
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub dead_letter_stream: String,
}

impl DurableStream {
    /// Creates the group at the start of the stream (and the stream) unless it exists.
    pub async fn ensure_group<C: ConnectionLike>(&self, conn: &mut C) -> Result<(), StreamError> {
        create_group(conn, &self.stream, &self.group, "0").await
    }

    /// One XREADGROUP. A missing group (Redis restarted, key evicted) is recreated before the
    /// error is returned, so the retry finds it.
    pub async fn read<C: ConnectionLike>(
        &self,
        conn: &mut C,
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, StreamError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count.max(1));
        let id = match from {
            ReadFrom::New => {
                cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
                ">".to_owned()
            }
            ReadFrom::Pending { after } => after.to_string(),
        };
        cmd.arg("STREAMS").arg(&self.stream).arg(id);
        let value: Value = match cmd.query_async(conn).await {
            Ok(v) => v,
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    self.ensure_group(conn).await?;
                }
                return Err(e.into());
            }
        };
        let raw = reply::read_reply(&value)?;
        let counts = match from {
            ReadFrom::New => Vec::new(),
            ReadFrom::Pending { .. } => self.delivery_counts(conn, &raw).await?,
        };
        Ok(with_counts(raw, &counts))
    }

    /// One page of XAUTOCLAIM, with delivery counts.
    pub async fn claim<C: ConnectionLike>(
        &self,
        conn: &mut C,
        cursor: EntryId,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<ClaimResult, StreamError> {
        let claimed: Result<Value, RedisError> = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(min_idle_ms)
            .arg(cursor.to_string())
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(conn)
            .await;
        let value = match claimed {
            Ok(v) => v,
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    self.ensure_group(conn).await?;
                }
                return Err(e.into());
            }
        };
        let (next_cursor, raw, mut deleted) = reply::autoclaim_reply(&value)?;
        deleted.extend(raw.iter().filter(|e| e.deleted).map(|e| e.id));
        let raw: Vec<RawEntry> = raw.into_iter().filter(|e| !e.deleted).collect();
        let counts = self.claimed_counts(conn, &raw).await?;
        Ok(ClaimResult {
            next_cursor,
            entries: with_counts(raw, &counts),
            deleted,
        })
    }

    /// Delivery counts of claimed entries, one XPENDING per id in one round trip: claimed ids
    /// are scattered among this consumer's own pending entries, so a range query sized to
    /// the claim could stop short of some of them.
    async fn claimed_counts<C: ConnectionLike>(
        &self,
        conn: &mut C,
        entries: &[RawEntry],
    ) -> Result<Vec<(EntryId, u64)>, StreamError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for e in entries {
            let id = e.id.to_string();
            pipe.cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&id)
                .arg(&id)
                .arg(1);
        }
        let replies: Vec<Value> = pipe.query_async(conn).await?;
        let mut counts = Vec::with_capacity(entries.len());
        for reply in &replies {
            counts.extend(reply::pending_counts(reply)?);
        }
        Ok(counts)
    }

    /// XPENDING over the range the entries span, for this consumer: entries of a pending
    /// read are this consumer's pending entries in order, so the range holds exactly them.
    async fn delivery_counts<C: ConnectionLike>(
        &self,
        conn: &mut C,
        entries: &[RawEntry],
    ) -> Result<Vec<(EntryId, u64)>, StreamError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let value: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(first.id.to_string())
            .arg(last.id.to_string())
            .arg(entries.len())
            .arg(&self.consumer)
            .query_async(conn)
            .await?;
        Ok(reply::pending_counts(&value)?)
    }

    pub async fn ack<C: ConnectionLike>(
        &self,
        conn: &mut C,
        ids: &[EntryId],
    ) -> Result<(), StreamError> {
        for chunk in ids.chunks(1_000) {
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&self.stream).arg(&self.group);
            for id in chunk {
                cmd.arg(id.to_string());
            }
            let _: Value = cmd.query_async(conn).await?;
        }
        Ok(())
    }

    /// Appends the entries to the dead-letter stream in one round trip.
    pub async fn dead_letter<C: ConnectionLike>(
        &self,
        conn: &mut C,
        entries: &[DeadLetter],
    ) -> Result<(), StreamError> {
        let mut pipe = redis::pipe();
        for entry in entries {
            let cmd = pipe.cmd("XADD").arg(&self.dead_letter_stream).arg("*");
            if let Some(payload) = &entry.payload {
                cmd.arg("payload").arg(payload.as_ref());
            }
            cmd.arg("source_id")
                .arg(entry.source_id.to_string())
                .arg("reason")
                .arg(&entry.reason)
                .ignore();
        }
        let _: Value = pipe.query_async(conn).await?;
        Ok(())
    }

    /// On a clean stop: removes this consumer from the group unless it still holds pending
    /// entries. Deleting a consumer drops its pending entries from the group (nobody could
    /// claim them any more), so those keep it; another instance claims them after
    /// DURABLE_CLAIM_IDLE_MS, or this instance's next start reads them. Checked and done in
    /// one script, so that nothing can become pending in between.
    pub async fn remove_consumer_unless_pending<C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> Result<ConsumerRemoval, StreamError> {
        let outcome: Result<i64, RedisError> = redis::cmd("EVAL")
            .arg(REMOVE_IDLE_CONSUMER)
            .arg(1)
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .query_async(conn)
            .await;
        match outcome {
            Ok(-1) => Ok(ConsumerRemoval::KeptWithPending),
            Ok(_) => Ok(ConsumerRemoval::Removed),
            // The group or the stream is gone (Redis restarted empty): no consumer to remove.
            Err(e) if e.to_string().contains("NOGROUP") => Ok(ConsumerRemoval::Removed),
            Err(e) => Err(e.into()),
        }
    }

    /// Entries pending in the group, all consumers together.
    pub async fn pending_total<C: ConnectionLike>(&self, conn: &mut C) -> Result<u64, StreamError> {
        let value: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await?;
        Ok(reply::pending_total(&value)?)
    }
}

/// What [`DurableStream::remove_consumer_unless_pending`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRemoval {
    Removed,
    KeptWithPending,
}

/// KEYS[1] stream, ARGV[1] group, ARGV[2] consumer: -1 when the consumer holds a pending
/// entry (left alone), else what XGROUP DELCONSUMER answers (0 pending entries dropped).
const REMOVE_IDLE_CONSUMER: &str = "\
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])";

/// `XGROUP CREATE <stream> <group> <start> MKSTREAM`; a group that already exists
/// (BUSYGROUP) is success.
pub async fn create_group<C: ConnectionLike>(
    conn: &mut C,
    stream: &str,
    group: &str,
    start: &str,
) -> Result<(), StreamError> {
    let created: Result<Value, RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `XINFO GROUPS <stream>`: every consumer group of the stream; none when there is no stream.
pub async fn stream_groups<C: ConnectionLike>(
    conn: &mut C,
    stream: &str,
) -> Result<Vec<reply::GroupInfo>, StreamError> {
    let info: Result<Value, RedisError> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await;
    match info {
        Ok(v) => Ok(reply::groups(&v)?),
        Err(e) if e.code() == Some("ERR") && e.to_string().contains("no such key") => {
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// True for errors after which the connection should be replaced.
pub fn is_connection_error(error: &StreamError) -> bool {
    match error {
        StreamError::Redis(e) => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_timeout()
                || e.kind() == ErrorKind::Io
        }
        StreamError::Reply(_) => false,
    }
}

fn with_counts(raw: Vec<RawEntry>, counts: &[(EntryId, u64)]) -> Vec<StreamEntry> {
    let counts: std::collections::BTreeMap<EntryId, u64> = counts.iter().copied().collect();
    raw.into_iter()
        .map(|e| StreamEntry {
            deliveries: counts.get(&e.id).copied().unwrap_or(1),
            id: e.id,
            payload: e.payload,
        })
        .collect()
}
