//! Trimming the telemetry stream below what every consumer group has done with.

use redis::aio::ConnectionLike;
use redis::Value;

use processor_core::stream::EntryId;
use processor_core::trim::GroupPosition;

use super::group::{stream_groups, StreamError};
use super::reply;

/// Where each group of `stream` stands: `XINFO GROUPS`, then a summary `XPENDING` for each
/// group that holds entries.
pub async fn group_positions<C: ConnectionLike>(
    conn: &mut C,
    stream: &str,
) -> Result<Vec<GroupPosition>, StreamError> {
    let mut positions = Vec::new();
    for group in stream_groups(conn, stream).await? {
        let oldest_pending = if group.pending > 0 {
            let summary: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&group.name)
                .query_async(conn)
                .await?;
            reply::pending_smallest(&summary)?
        } else {
            None
        };
        positions.push(GroupPosition {
            name: group.name,
            last_delivered: group.last_delivered,
            oldest_pending,
        });
    }
    Ok(positions)
}

/// `XTRIM <stream> MINID ~ <floor>`: entries below `floor` may go; Redis removes only whole
/// nodes of them (`~`), which is cheap and never removes more. Returns how many went.
pub async fn trim_below<C: ConnectionLike>(
    conn: &mut C,
    stream: &str,
    floor: EntryId,
) -> Result<u64, StreamError> {
    let removed: i64 = redis::cmd("XTRIM")
        .arg(stream)
        .arg("MINID")
        .arg("~")
        .arg(floor.to_string())
        .query_async(conn)
        .await?;
    Ok(u64::try_from(removed).unwrap_or(0))
}
