//! The io crate's [`Network`] over turmoil's simulated TCP.

use std::io;
use std::net::SocketAddr;

use coffer_io::server::{Listener, Network};
use turmoil::net::{TcpListener, TcpStream};

/// Binds and connects turmoil sockets on the host that calls it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNetwork;

/// A turmoil listener.
pub struct SimListener(TcpListener);

impl Network for SimNetwork {
    type Listener = SimListener;
    type Stream = TcpStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        TcpListener::bind(addr).await.map(SimListener)
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }
}

impl Listener for SimListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
