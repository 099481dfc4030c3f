//! What reaches a hub shard: the core's inputs as they are, and the two facts about a
//! connection's I/O that only the shell has.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use processor_core::live::{ConnId, Input};

use super::socket::Socket;

pub enum ShardInput {
    /// An input for the shard's `LiveHub`, unchanged.
    Core(Input),
    /// A new connection's socket and its reader task, given before its
    /// [`Input::Connected`].
    Attach {
        conn: ConnId,
        socket: Arc<Socket>,
        reader: AbortHandle,
    },
    /// The writer a full socket was handed to wrote all it was given (or failed).
    WriterDone { conn: ConnId, failed: bool },
}

/// The input queues of every shard. A connection belongs to one shard, chosen by its id.
#[derive(Clone)]
pub struct Shards {
    senders: Arc<[mpsc::UnboundedSender<ShardInput>]>,
}

impl Shards {
    pub fn new(senders: Vec<mpsc::UnboundedSender<ShardInput>>) -> Shards {
        Shards {
            senders: senders.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// The queue of `conn`'s shard.
    pub fn of(&self, conn: ConnId) -> &mpsc::UnboundedSender<ShardInput> {
        // Ids are handed out in sequence, so this spreads connections evenly.
        &self.senders[(conn.0 % self.senders.len() as u64) as usize]
    }

    /// Sends `input` (built once per shard) to every shard; false once none takes it.
    pub fn broadcast(&self, input: impl Fn() -> Input) -> bool {
        let mut delivered = false;
        for sender in self.senders.iter() {
            delivered |= sender.send(ShardInput::Core(input())).is_ok();
        }
        delivered
    }
}
