//! The io crate's [`Network`] over turmoil's simulated TCP, with streams that a crash closes
//! in a fixed order.
//!
//! A crash drops the host's tokio runtime, which shuts its tasks down in an order set by
//! their task ids. tokio 1.54 keeps a runtime's tasks in shards picked by task id, and the ids
//! come from one counter per process, so that order depends on every task spawned before,
//! in earlier runs and in tests running on other threads. Each dropped turmoil stream sends a
//! FIN, and each FIN draws its latency from turmoil's RNG, so the order of the FINs would
//! change every later random draw. [`StreamRegistry`] records each host's streams in creation
//! order, and the first stream dropped during a crash closes all of them in that order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};

use coffer_io::server::{Listener, Network};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::{TcpListener, TcpStream};

/// Binds and connects turmoil sockets on the host that calls it. Its streams register in the
/// thread's current [`StreamRegistry`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNetwork;

/// A turmoil listener whose accepted streams register in the thread's current
/// [`StreamRegistry`].
pub struct SimListener(TcpListener);

impl Network for SimNetwork {
    type Listener = SimListener;
    type Stream = SimStream;

    async fn bind(&self, addr: SocketAddr) -> io::Result<SimListener> {
        TcpListener::bind(addr).await.map(SimListener)
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<SimStream> {
        TcpStream::connect(addr).await.map(SimStream::register)
    }
}

impl Listener for SimListener {
    type Stream = SimStream;

    async fn accept(&mut self) -> io::Result<(SimStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((SimStream::register(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A turmoil stream, shared with the registry so that a crash can close it.
type Slot = Arc<Mutex<Option<TcpStream>>>;

thread_local! {
    /// The registry of the simulation running on this thread. A simulation runs on one
    /// thread, so every stream it opens registers here.
    static CURRENT_REGISTRY: RefCell<Arc<StreamRegistry>> =
        RefCell::new(Arc::new(StreamRegistry::default()));
}

/// The open streams of one simulation, by host and creation order, the host being crashed,
/// and a digest of every byte the streams carried.
#[derive(Debug, Default)]
pub struct StreamRegistry {
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    next_id: u64,
    open: BTreeMap<(IpAddr, u64), Weak<Mutex<Option<TcpStream>>>>,
    crashing: Option<IpAddr>,
    wire: Sha256,
    wire_bytes: u64,
}

/// The direction of bytes through a stream, as recorded in the wire digest.
#[derive(Clone, Copy)]
enum Direction {
    Read = 0,
    Written = 1,
}

impl StreamRegistry {
    /// Makes a new registry the thread's current one, for the simulation about to be built.
    /// Streams opened earlier stay in the registry they were opened in.
    pub fn install() -> Arc<StreamRegistry> {
        let registry = Arc::new(StreamRegistry::default());
        CURRENT_REGISTRY.with(|current| *current.borrow_mut() = Arc::clone(&registry));
        registry
    }

    /// Runs `crash`, which drops the software of the host at `host`. The first of the host's
    /// streams dropped meanwhile closes all of them, in the order they were opened.
    pub fn run_crash<R>(&self, host: IpAddr, crash: impl FnOnce() -> R) -> R {
        self.lock().crashing = Some(host);
        let result = crash();
        let mut state = self.lock();
        state.crashing = None;
        let ids: Vec<_> = host_keys(&state, host).collect();
        for key in ids {
            state.open.remove(&key);
        }
        result
    }

    /// Returns the number of bytes the registered streams read and wrote, and the SHA-256 of
    /// those bytes, each chunk tagged with its stream and direction, hex-encoded.
    pub fn wire_digest(&self) -> (u64, String) {
        let state = self.lock();
        (state.wire_bytes, hex::encode(state.wire.clone().finalize()))
    }

    fn record(&self, stream_id: u64, direction: Direction, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let mut state = self.lock();
        state.wire.update(stream_id.to_le_bytes());
        state.wire.update([direction as u8]);
        state.wire.update(length.to_le_bytes());
        state.wire.update(bytes);
        state.wire_bytes += length;
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Returns the registry keys of `host`'s streams, in creation order.
fn host_keys(state: &RegistryState, host: IpAddr) -> impl Iterator<Item = (IpAddr, u64)> + '_ {
    state
        .open
        .range((host, 0)..=(host, u64::MAX))
        .map(|(key, _)| *key)
}

fn lock_slot(slot: &Mutex<Option<TcpStream>>) -> MutexGuard<'_, Option<TcpStream>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A turmoil TCP stream registered in a [`StreamRegistry`] under its local host.
///
/// NOTE: a stream to a loopback address registers under the loopback address, not its host,
/// so a crash does not order its FIN. Simulated nodes only connect to other hosts.
pub struct SimStream {
    slot: Slot,
    key: (IpAddr, u64),
    registry: Arc<StreamRegistry>,
}

impl SimStream {
    /// Registers `stream` in the thread's current registry.
    pub fn register(stream: TcpStream) -> SimStream {
        let host = stream
            .local_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let registry = CURRENT_REGISTRY.with(|current| Arc::clone(&current.borrow()));
        let slot: Slot = Arc::new(Mutex::new(Some(stream)));
        let key = {
            let mut state = registry.lock();
            let key = (host, state.next_id);
            state.next_id += 1;
            state.open.insert(key, Arc::downgrade(&slot));
            key
        };
        SimStream {
            slot,
            key,
            registry,
        }
    }

    /// Polls the turmoil stream, or fails with `NotConnected` once a crash has closed it.
    fn poll_with<T>(
        &self,
        poll: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match lock_slot(&self.slot).as_mut() {
            Some(stream) => poll(Pin::new(stream)),
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the stream was closed by a crash of its host",
            ))),
        }
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let (host, _) = self.key;
        let closed: Vec<TcpStream> = {
            let mut state = self.registry.lock();
            if state.crashing != Some(host) {
                state.open.remove(&self.key);
                return;
            }
            let keys: Vec<_> = host_keys(&state, host).collect();
            keys.into_iter()
                .filter_map(|key| state.open.remove(&key)?.upgrade())
                .filter_map(|slot| lock_slot(&slot).take())
                .collect()
        };
        // Each turmoil stream sends its FIN as it drops, here in creation order.
        drop(closed);
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = self.poll_with(|stream| stream.poll_read(cx, buf));
        if let Poll::Ready(Ok(())) = poll {
            self.registry
                .record(self.key.1, Direction::Read, &buf.filled()[before..]);
        }
        poll
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.poll_with(|stream| stream.poll_write(cx, buf));
        if let Poll::Ready(Ok(written)) = poll {
            self.registry
                .record(self.key.1, Direction::Written, &buf[..written]);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(|stream| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_with(|stream| stream.poll_shutdown(cx))
    }
}
