//! A shard's side of one connection: the bytes the core sent it that the socket has not
//! taken yet, written without waiting, and handed to a writer task only while the socket
//! is full.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use processor_core::live::{ConnId, Input};
use processor_core::websocket::Frame;

use super::input::ShardInput;
use super::socket::Socket;

/// An output buffer that grew past this is given back once empty, so that a burst does not
/// leave an idle connection holding memory.
const KEEP_CAPACITY: usize = 16 * 1024;
/// How long a closed connection may take to receive what was queued for it and its close
/// frame. One timer per closing connection, never one per message.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

pub struct ConnIo {
    socket: Arc<Socket>,
    reader: AbortHandle,
    /// Bytes the core sent and the socket has not taken, oldest first.
    out: Vec<u8>,
    /// The writer task holding the bytes a full socket could not take, if any. While it
    /// runs, new bytes wait in `out`.
    writer: Option<JoinHandle<()>>,
    /// Listed among the shard's connections with bytes to write.
    pub dirty: bool,
}

/// The outcome of a write pass.
pub enum Flushed {
    /// The socket took `bytes` (maybe 0); report them to the core.
    Took(u64),
    /// Nothing to do now (nothing queued, or a writer holds the socket).
    Idle,
    /// The socket failed; the connection is gone.
    Failed(u64),
}

impl ConnIo {
    pub fn new(socket: Arc<Socket>, reader: AbortHandle) -> ConnIo {
        ConnIo {
            socket,
            reader,
            out: Vec::new(),
            writer: None,
            dirty: false,
        }
    }

    pub fn queue(&mut self, frame: &Frame) {
        self.out.extend_from_slice(frame.bytes());
    }

    /// Writes what the socket takes now. What it does not take goes to a writer task that
    /// waits for room and reports every write to the shard (`me`).
    pub fn flush(&mut self, conn: ConnId, me: &mpsc::UnboundedSender<ShardInput>) -> Flushed {
        if self.writer.is_some() || self.out.is_empty() {
            return Flushed::Idle;
        }
        let mut written = 0;
        while written < self.out.len() {
            match self.socket.try_write(&self.out[written..]) {
                Ok(0) => return Flushed::Failed(written as u64),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::debug!(%conn, %error, "websocket write failed");
                    return Flushed::Failed(written as u64);
                }
            }
        }
        if written == self.out.len() {
            self.out.clear();
            if self.out.capacity() > KEEP_CAPACITY {
                self.out = Vec::new();
            }
        } else {
            let rest = self.out.split_off(written);
            self.out.clear();
            self.writer = Some(tokio::spawn(write_when_ready(
                self.socket.clone(),
                rest,
                conn,
                me.clone(),
            )));
        }
        Flushed::Took(written as u64)
    }

    /// The writer finished: writes go direct again.
    pub fn writer_done(&mut self) {
        self.writer = None;
    }

    /// Queues the close frame after everything else and lets a task deliver it, within
    /// [`CLOSE_LINGER`], then end the connection. The reader stops at once.
    pub fn close(mut self, code: u16, reason: &str) -> JoinHandle<()> {
        self.reader.abort();
        self.queue(&Frame::close(code, reason));
        let ConnIo {
            socket,
            out,
            writer,
            ..
        } = self;
        tokio::spawn(async move {
            let stuck_writer = writer.as_ref().map(JoinHandle::abort_handle);
            let deliver = async {
                if let Some(writer) = writer {
                    let _ = writer.await;
                }
                let mut written = 0;
                while written < out.len() {
                    match socket.write_some(&out[written..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => written += n,
                    }
                }
                let _ = socket.shutdown().await;
            };
            if tokio::time::timeout(CLOSE_LINGER, deliver).await.is_err() {
                if let Some(writer) = stuck_writer {
                    writer.abort();
                }
            }
        })
    }

    /// The connection is gone: stop its tasks; the socket closes with the last reference.
    pub fn drop_now(self) {
        self.reader.abort();
        if let Some(writer) = self.writer {
            writer.abort();
        }
    }
}

/// Writes `bytes` as the socket takes them, reporting each write to the shard.
async fn write_when_ready(
    socket: Arc<Socket>,
    bytes: Vec<u8>,
    conn: ConnId,
    shard: mpsc::UnboundedSender<ShardInput>,
) {
    let mut written = 0;
    while written < bytes.len() {
        match socket.write_some(&bytes[written..]).await {
            Ok(n) if n > 0 => {
                written += n;
                let input = Input::Written {
                    conn,
                    bytes: n as u64,
                };
                if shard.send(ShardInput::Core(input)).is_err() {
                    return;
                }
            }
            Ok(_) | Err(_) => {
                let _ = shard.send(ShardInput::WriterDone { conn, failed: true });
                return;
            }
        }
    }
    let _ = shard.send(ShardInput::WriterDone {
        conn,
        failed: false,
    });
}
