//! The task that owns the blocking-read connection: one read at a time, never cancelled.

use tokio::sync::mpsc;

use processor_core::durable::{Input, ReadFrom, StreamFailure};

use super::ports::BlockingReader;

pub struct ReadRequest {
    pub from: ReadFrom,
    pub count: usize,
}

/// Serves read requests until the request channel closes.
pub async fn serve<R: BlockingReader>(
    mut reader: R,
    mut requests: mpsc::Receiver<ReadRequest>,
    results: mpsc::UnboundedSender<Input>,
) {
    while let Some(request) = requests.recv().await {
        let result = reader.read(request.from, request.count).await;
        if results
            .send(Input::Read(result.map_err(StreamFailure::new)))
            .is_err()
        {
            return;
        }
    }
}
