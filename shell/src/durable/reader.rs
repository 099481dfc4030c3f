//! The task that owns the blocking-read connection.
//!
//! One read at a time, never cancelled: a read dropped half-way could be delivered by the
//! server after the client stopped listening, leaving its entries pending with nobody
//! storing them until they are claimed.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use processor_core::durable::ReadFrom;
use processor_core::stream::StreamEntry;

use crate::redis_stream::{blocking_connection, DurableStream, StreamError};

pub struct ReadRequest {
    pub from: ReadFrom,
    pub count: usize,
}

/// Serves read requests until the request channel closes.
pub async fn serve(
    client: redis::Client,
    stream: DurableStream,
    block: Duration,
    mut requests: mpsc::Receiver<ReadRequest>,
    results: mpsc::UnboundedSender<Result<Vec<StreamEntry>, StreamError>>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some(request) = requests.recv().await {
        let result = read_once(&client, &stream, block, &mut conn, request).await;
        if result.is_err() {
            // A fresh connection next time; its group is checked on connect.
            conn = None;
        }
        if results.send(result).is_err() {
            return;
        }
    }
}

async fn read_once(
    client: &redis::Client,
    stream: &DurableStream,
    block: Duration,
    conn: &mut Option<MultiplexedConnection>,
    request: ReadRequest,
) -> Result<Vec<StreamEntry>, StreamError> {
    let c = match conn {
        Some(c) => c,
        None => {
            let mut fresh = blocking_connection(client, block).await?;
            stream.ensure_group(&mut fresh).await?;
            conn.insert(fresh)
        }
    };
    stream.read(c, request.from, request.count, block).await
}
