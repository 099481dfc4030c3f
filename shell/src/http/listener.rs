//! Where WebSocket clients come from: a TCP listener in the service, a simulated one in the
//! simulation.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// The other end of an accepted connection, for logs.
    fn peer(_io: &Self::Io) -> Option<SocketAddr> {
        None
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self).await?;
        // Positions are small frames that must leave at once, not wait for a fuller segment.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn peer(io: &TcpStream) -> Option<SocketAddr> {
        io.peer_addr().ok()
    }
}
