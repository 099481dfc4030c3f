//! One client's socket, shared by the task that reads it and the shard that writes it.
//!
//! The shard writes without waiting ([`Socket::try_write`]) right after it handled a batch
//! of inputs, and hands the rest to a waiting writer only when the kernel buffer is full;
//! the reader task waits for client bytes. Both go through the same upgraded connection, so
//! it sits behind a lock that is only ever held for one poll, never across an await.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::edge::slots::Slot;

pub struct Socket {
    io: Mutex<TokioIo<Upgraded>>,
    /// Held for as long as the socket is: the connection counts against the cap until
    /// then.
    _slot: Slot,
}

impl Socket {
    pub fn new(io: Upgraded, slot: Slot) -> Socket {
        Socket {
            io: Mutex::new(TokioIo::new(io)),
            _slot: slot,
        }
    }

    fn lock(&self) -> MutexGuard<'_, TokioIo<Upgraded>> {
        // A panic while holding the lock leaves the socket as it was: keep using it.
        self.io
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut *self.lock()).poll_write(&mut cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Waits until the socket takes some of `buf`.
    pub async fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *self.lock()).poll_write(cx, buf)).await
    }

    /// Waits for client bytes; 0 at the end of the stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut read = ReadBuf::new(buf);
            match Pin::new(&mut *self.lock()).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sends FIN after what was written.
    pub async fn shutdown(&self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut *self.lock()).poll_shutdown(cx)).await
    }
}
