//! The cluster listener: the accept loop of the cluster port.
//!
//! Each connection first takes a slot in the bounded pool of unfinished handshakes, within a
//! per-address cap, and has a time limit to authenticate. When the pool is full, a new
//! connection evicts the oldest unfinished handshake, so stalled handshakes cannot keep a real
//! peer out. An authenticated connection moves to the separate pool of sessions. A
//! node that is not a primary rejects every connection with a TLS alert. A replication
//! connection goes to the [`ReplicationHandler`] and is closed when the handler returns or the
//! secondary's certificate leaves the active set, whichever comes first. A forwarding
//! connection is closed, because forwarding is not supported yet.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use super::tls::{
    ClusterAcceptor, ClusterAlpn, ClusterPeer, DEFAULT_HANDSHAKE_TIMEOUT, reject_not_primary,
};
use crate::server::net::{Listener, Stream};

/// Bounds on what connections to the cluster port may cost the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterLimits {
    /// Time a peer has to send its ClientHello and complete the handshake.
    pub handshake_timeout: Duration,
    /// Maximum number of authenticated connections (sessions). Unfinished handshakes do not
    /// count against it. An authenticated connection beyond it is closed at once.
    pub max_connections: usize,
    /// Maximum number of unfinished handshakes from all addresses. A new connection beyond it
    /// evicts the oldest unfinished handshake.
    pub max_handshakes: usize,
    /// Maximum number of connections from one IP address that have not finished their
    /// handshake. A new connection from an address at the cap is closed at once.
    pub max_handshakes_per_ip: usize,
}

impl Default for ClusterLimits {
    fn default() -> ClusterLimits {
        ClusterLimits {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: 256,
            max_handshakes: 64,
            max_handshakes_per_ip: 16,
        }
    }
}

/// The connections still in their handshake, by IP address and in order of arrival.
#[derive(Default)]
struct Handshakes {
    state: Mutex<HandshakeState>,
}

#[derive(Default)]
struct HandshakeState {
    by_ip: BTreeMap<IpAddr, usize>,
    /// The eviction signal of each unfinished handshake, by arrival number, oldest first.
    open: BTreeMap<u64, oneshot::Sender<()>>,
    next_id: u64,
}

impl Handshakes {
    /// Counts one more handshake from `ip`, evicting the oldest unfinished handshake when
    /// `max_total` are open. Returns `None` when `ip` has `max_per_ip` already.
    fn start(
        self: &Arc<Self>,
        ip: IpAddr,
        max_per_ip: usize,
        max_total: usize,
    ) -> Option<HandshakeSlot> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let count = state.by_ip.entry(ip).or_insert(0);
        if *count >= max_per_ip.max(1) {
            return None;
        }
        *count += 1;
        while state.open.len() >= max_total.max(1) {
            if let Some((_, evict)) = state.open.pop_first() {
                let _ = evict.send(());
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        state.open.insert(id, evict);
        Some(HandshakeSlot {
            handshakes: Arc::clone(self),
            ip,
            id,
            evicted,
        })
    }
}

/// One counted handshake, released when dropped.
struct HandshakeSlot {
    handshakes: Arc<Handshakes>,
    ip: IpAddr,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

impl HandshakeSlot {
    /// Runs `future` unless a newer connection evicts this handshake first, which returns
    /// `None`.
    async fn unless_evicted<F: Future>(&mut self, future: F) -> Option<F::Output> {
        tokio::select! {
            output = future => Some(output),
            _ = &mut self.evicted => None,
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut state = self
            .handshakes
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.open.remove(&self.id);
        if let Some(count) = state.by_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Whether the node accepts cluster connections at the moment.
#[derive(Clone, Debug)]
pub enum AcceptorState {
    /// The node is a primary and accepts its active secondaries with this acceptor.
    Primary(Arc<ClusterAcceptor>),
    /// The node rejects every cluster connection, for the logged reason.
    NotPrimary {
        /// The reason, for example "replication is not enabled" or "this node is a secondary".
        reason: String,
    },
}

/// The source of the [`AcceptorState`] that the listener reads for each new connection.
///
/// A new state applies to later connections only. Open sessions end when their certificate
/// leaves the active set, when the handler returns, or at shutdown.
pub trait AcceptorSource: Send + Sync + 'static {
    /// Returns the state that applies to a connection accepted now.
    fn acceptor_state(&self) -> AcceptorState;
}

/// The node's role as a watch channel, which the node updates when replication is enabled or
/// disabled or the node changes role.
impl AcceptorSource for watch::Receiver<AcceptorState> {
    fn acceptor_state(&self) -> AcceptorState {
        self.borrow().clone()
    }
}

/// A fixed acceptor: the node is always a primary.
impl AcceptorSource for Arc<ClusterAcceptor> {
    fn acceptor_state(&self) -> AcceptorState {
        AcceptorState::Primary(Arc::clone(self))
    }
}

/// The replication session runner that the listener hands accepted connections to.
pub trait ReplicationHandler: Send + Sync + 'static {
    /// Serves one secondary's replication session until it ends. The listener drops the future,
    /// and with it the connection, when the secondary's certificate is revoked or the listener
    /// shuts down.
    fn serve<S: Stream>(
        &self,
        stream: TlsStream<S>,
        peer: ClusterPeer,
    ) -> impl Future<Output = ()> + Send;

    /// Serves one secondary's forwarded requests until the connection ends. The listener drops
    /// the future, and with it the connection, under the same conditions as [`Self::serve`].
    fn serve_forwarding<S: Stream>(
        &self,
        stream: TlsStream<S>,
        peer: ClusterPeer,
    ) -> impl Future<Output = ()> + Send;
}

/// Serves the cluster port on `listener` until `shutdown` completes, then closes every open
/// connection and returns.
///
/// Replication sessions are long-lived streams that do not end on their own, so shutdown ends
/// them instead of waiting for them.
pub async fn serve_cluster<L, A, H>(
    mut listener: L,
    source: A,
    handler: Arc<H>,
    limits: ClusterLimits,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    A: AcceptorSource,
    H: ReplicationHandler,
{
    let shared = Arc::new(Shared {
        source,
        handler,
        limits,
        sessions: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        rejected: RepeatCounter::default(),
        failed: RepeatCounter::default(),
        evicted: RepeatCounter::default(),
        over_limit: RepeatCounter::default(),
    });
    let over_ip_limit = RepeatCounter::default();
    let handshakes = Arc::new(Handshakes::default());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let slot = handshakes.start(
                        addr.ip(),
                        limits.max_handshakes_per_ip,
                        limits.max_handshakes,
                    );
                    let Some(slot) = slot else {
                        if let Some(rejected) = over_ip_limit.record() {
                            tracing::warn!(
                                peer = %addr,
                                max_handshakes_per_ip = limits.max_handshakes_per_ip,
                                rejected,
                                "too many unfinished cluster handshakes from one address; closing a new one"
                            );
                        }
                        drop(stream);
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        shared.run(stream, addr, slot).await;
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a cluster connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::info!(
        open = connections.len(),
        "the cluster listener stopped; closing its connections"
    );
    connections.shutdown().await;
}

/// The state every connection task of one listener shares.
struct Shared<A, H> {
    source: A,
    handler: Arc<H>,
    limits: ClusterLimits,
    /// Permits for authenticated connections, taken after the handshake.
    sessions: Arc<Semaphore>,
    rejected: RepeatCounter,
    failed: RepeatCounter,
    evicted: RepeatCounter,
    over_limit: RepeatCounter,
}

impl<A: AcceptorSource, H: ReplicationHandler> Shared<A, H> {
    async fn run<S: Stream>(&self, stream: S, addr: SocketAddr, mut slot: HandshakeSlot) {
        let acceptor = match self.source.acceptor_state() {
            AcceptorState::Primary(acceptor) => acceptor,
            AcceptorState::NotPrimary { reason } => {
                if let Some(rejected) = self.rejected.record() {
                    tracing::info!(peer = %addr, rejected, "rejected a cluster connection: {reason}");
                }
                let rejection = reject_not_primary(stream);
                let rejection = tokio::time::timeout(self.limits.handshake_timeout, rejection);
                let _ = slot.unless_evicted(rejection).await;
                return;
            }
        };

        let handshake = acceptor.accept(stream);
        let handshake = tokio::time::timeout(self.limits.handshake_timeout, handshake);
        let Some(handshake) = slot.unless_evicted(handshake).await else {
            if let Some(evicted) = self.evicted.record() {
                tracing::warn!(
                    peer = %addr,
                    max_handshakes = self.limits.max_handshakes,
                    evicted,
                    "too many unfinished cluster handshakes; closing the oldest"
                );
            }
            return;
        };
        let accepted = match handshake {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(error)) => {
                if let Some(failed) = self.failed.record() {
                    tracing::warn!(peer = %addr, failed, %error, "rejected a cluster connection");
                }
                return;
            }
            Err(_) => {
                if let Some(failed) = self.failed.record() {
                    tracing::warn!(
                        peer = %addr,
                        failed,
                        timeout_ms = self.limits.handshake_timeout.as_millis(),
                        "the cluster TLS handshake timed out"
                    );
                }
                return;
            }
        };

        // Authenticated: the connection moves from the handshake pool to the session pool.
        drop(slot);
        let Ok(_session) = Arc::clone(&self.sessions).try_acquire_owned() else {
            if let Some(rejected) = self.over_limit.record() {
                tracing::warn!(
                    peer = %addr,
                    max_connections = self.limits.max_connections,
                    rejected,
                    "too many open cluster sessions; closing a new one"
                );
            }
            return;
        };
        let peer = accepted.peer;
        let span = tracing::info_span!(
            "cluster",
            peer = %addr,
            secondary_id = %peer.secondary.secondary_id,
            serial = %peer.secondary.serial,
        );
        let stream = accepted.stream;
        match accepted.alpn {
            ClusterAlpn::Replication => {
                self.replicate(&acceptor, stream, peer)
                    .instrument(span)
                    .await;
            }
            ClusterAlpn::Forwarding => {
                self.forward(&acceptor, stream, peer).instrument(span).await;
            }
        }
    }

    async fn forward<S: Stream>(
        &self,
        acceptor: &ClusterAcceptor,
        stream: TlsStream<S>,
        peer: ClusterPeer,
    ) {
        tracing::info!("forwarding session started");
        let secondary = peer.secondary.clone();
        tokio::select! {
            () = self.handler.serve_forwarding(stream, peer) => {
                tracing::info!("forwarding session ended");
            }
            () = acceptor.active().revoked(&secondary) => {
                tracing::info!("closing the forwarding session: the certificate is no longer active");
            }
        }
    }

    async fn replicate<S: Stream>(
        &self,
        acceptor: &ClusterAcceptor,
        stream: TlsStream<S>,
        peer: ClusterPeer,
    ) {
        tracing::info!("replication session started");
        let secondary = peer.secondary.clone();
        tokio::select! {
            () = self.handler.serve(stream, peer) => {
                tracing::info!("replication session ended");
            }
            () = acceptor.active().revoked(&secondary) => {
                tracing::info!("closing the replication session: the certificate is no longer active");
            }
        }
    }
}

/// A counter of one kind of event that selects the 1st, 2nd, 4th, 8th and so on for logging,
/// so a flood of connections cannot flood the log too.
#[derive(Default)]
struct RepeatCounter {
    count: AtomicU64,
}

impl RepeatCounter {
    /// Counts one event and returns the count when this event should be logged.
    fn record(&self) -> Option<u64> {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        count.is_power_of_two().then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::server::cluster::tls::testing::{TestCluster, TestSecondary};
    use crate::server::cluster::tls::{ClusterConnector, ClusterTlsError};
    use crate::server::net::{Network, TokioNetwork};

    /// Reports each peer, then echoes what the secondary sends.
    struct EchoHandler {
        peers: mpsc::UnboundedSender<ClusterPeer>,
    }

    impl ReplicationHandler for EchoHandler {
        async fn serve<S: Stream>(&self, stream: TlsStream<S>, peer: ClusterPeer) {
            let _ = self.peers.send(peer);
            let (mut reader, mut writer) = tokio::io::split(stream);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }

        async fn serve_forwarding<S: Stream>(&self, stream: TlsStream<S>, peer: ClusterPeer) {
            self.serve(stream, peer).await;
        }
    }

    struct TestListener {
        addr: SocketAddr,
        peers: mpsc::UnboundedReceiver<ClusterPeer>,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<()>,
    }

    impl TestListener {
        async fn start(source: impl AcceptorSource, limits: ClusterLimits) -> TestListener {
            let listener = TokioNetwork
                .bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (peers_sender, peers) = mpsc::unbounded_channel();
            let handler = Arc::new(EchoHandler {
                peers: peers_sender,
            });
            let (stop, stopped) = oneshot::channel::<()>();
            let shutdown = async move {
                let _ = stopped.await;
            };
            let task = tokio::spawn(serve_cluster(listener, source, handler, limits, shutdown));
            TestListener {
                addr,
                peers,
                stop: Some(stop),
                task,
            }
        }

        async fn connect(
            &self,
            connector: &ClusterConnector,
            alpn: ClusterAlpn,
        ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClusterTlsError> {
            let stream = TokioNetwork.connect(self.addr).await.unwrap();
            connector.connect(stream, alpn).await
        }

        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            self.task.await.unwrap();
        }
    }

    fn fast_limits() -> ClusterLimits {
        ClusterLimits {
            handshake_timeout: Duration::from_secs(5),
            ..ClusterLimits::default()
        }
    }

    async fn echo(stream: &mut (impl Stream + ?Sized)) -> io::Result<[u8; 4]> {
        stream.write_all(b"ping").await?;
        stream.flush().await?;
        let mut received = [0u8; 4];
        stream.read_exact(&mut received).await?;
        Ok(received)
    }

    /// Waits for the peer to close `stream`: a read returns end of file or an error.
    async fn assert_closed(stream: &mut (impl Stream + ?Sized)) {
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the connection is closed: {read:?}"
        );
    }

    fn primary(cluster: &TestCluster) -> Arc<ClusterAcceptor> {
        Arc::new(cluster.acceptor())
    }

    fn secondary(cluster: &mut TestCluster) -> TestSecondary {
        cluster.secondary("east")
    }

    #[tokio::test]
    async fn replication_connection_reaches_handler() {
        let mut cluster = TestCluster::new(101);
        let east = secondary(&mut cluster);
        let mut listener = TestListener::start(primary(&cluster), fast_limits()).await;

        let mut stream = listener
            .connect(&east.connector(), ClusterAlpn::Replication)
            .await
            .unwrap();
        assert_eq!(&echo(&mut stream).await.unwrap(), b"ping");
        let peer = listener.peers.recv().await.unwrap();
        assert_eq!(peer.secondary.secondary_id, "east");
        assert_eq!(peer.secondary.serial, east.serial);
        listener.stop().await;
    }

    #[tokio::test]
    async fn revocation_closes_open_session() {
        let mut cluster = TestCluster::new(102);
        let east = secondary(&mut cluster);
        let listener = TestListener::start(primary(&cluster), fast_limits()).await;
        let connector = east.connector();
        let mut stream = listener
            .connect(&connector, ClusterAlpn::Replication)
            .await
            .unwrap();
        assert_eq!(&echo(&mut stream).await.unwrap(), b"ping");

        cluster.active.replace([]);
        assert_closed(&mut stream).await;
        let again = listener.connect(&connector, ClusterAlpn::Replication).await;
        assert!(again.is_err(), "a revoked secondary cannot reconnect");
        listener.stop().await;
    }

    #[tokio::test]
    async fn forwarding_session_closes_on_revocation() {
        let mut cluster = TestCluster::new(103);
        let east = secondary(&mut cluster);
        let mut listener = TestListener::start(primary(&cluster), fast_limits()).await;

        let mut stream = listener
            .connect(&east.connector(), ClusterAlpn::Forwarding)
            .await
            .unwrap();
        assert_eq!(&echo(&mut stream).await.unwrap(), b"ping");
        let peer = listener.peers.recv().await.unwrap();
        assert_eq!(peer.secondary.secondary_id, "east");

        cluster.active.replace([]);
        assert_closed(&mut stream).await;
        let again = listener
            .connect(&east.connector(), ClusterAlpn::Forwarding)
            .await;
        assert!(again.is_err(), "a revoked secondary cannot forward again");
        listener.stop().await;
    }

    #[tokio::test]
    async fn non_primary_rejects_until_promoted() {
        let mut cluster = TestCluster::new(104);
        let east = secondary(&mut cluster);
        let (role, source) = watch::channel(AcceptorState::NotPrimary {
            reason: "this node is a secondary".to_owned(),
        });
        let listener = TestListener::start(source, fast_limits()).await;
        let connector = east.connector();

        for _ in 0..2 {
            let rejected = listener.connect(&connector, ClusterAlpn::Replication).await;
            assert!(
                matches!(rejected, Err(ClusterTlsError::NotPrimary)),
                "{:?}",
                rejected.err()
            );
        }

        role.send_replace(AcceptorState::Primary(primary(&cluster)));
        let accepted = listener.connect(&connector, ClusterAlpn::Replication).await;
        assert!(accepted.is_ok(), "{:?}", accepted.err());
        listener.stop().await;
    }

    #[tokio::test]
    async fn session_cap_holds() {
        let mut cluster = TestCluster::new(105);
        let east = secondary(&mut cluster);
        let limits = ClusterLimits {
            max_connections: 1,
            ..fast_limits()
        };
        let listener = TestListener::start(primary(&cluster), limits).await;
        let connector = east.connector();

        let mut session = listener
            .connect(&connector, ClusterAlpn::Replication)
            .await
            .unwrap();
        assert_eq!(&echo(&mut session).await.unwrap(), b"ping");
        // An idle connection takes a handshake slot, not a session permit.
        let _idle = TcpStream::connect(listener.addr).await.unwrap();

        if let Ok(mut extra) = listener.connect(&connector, ClusterAlpn::Replication).await {
            assert!(
                echo(&mut extra).await.is_err(),
                "a session over the cap is closed"
            );
        }
        assert_eq!(&echo(&mut session).await.unwrap(), b"ping");

        drop(session);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut accepted = listener
            .connect(&connector, ClusterAlpn::Replication)
            .await
            .unwrap();
        assert_eq!(&echo(&mut accepted).await.unwrap(), b"ping");
        listener.stop().await;
    }

    /// Opens a TCP connection to `addr` from the loopback address `source`.
    async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        socket.connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn one_address_cannot_hold_every_handshake() {
        let mut cluster = TestCluster::new(109);
        let east = secondary(&mut cluster);
        let limits = ClusterLimits {
            max_handshakes_per_ip: 2,
            ..fast_limits()
        };
        let listener = TestListener::start(primary(&cluster), limits).await;
        let first = connect_from("127.0.0.2", listener.addr).await;
        let second = connect_from("127.0.0.2", listener.addr).await;
        // Give the accept loop time to count both.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut third = connect_from("127.0.0.2", listener.addr).await;
        assert_closed(&mut third).await;
        let accepted = listener
            .connect(&east.connector(), ClusterAlpn::Replication)
            .await;
        assert!(accepted.is_ok(), "{:?}", accepted.err());

        drop((first, second));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = connect_from("127.0.0.2", listener.addr).await;
        let idle =
            tokio::time::timeout(Duration::from_millis(300), again.read(&mut [0u8; 1])).await;
        assert!(
            idle.is_err(),
            "a new handshake is accepted once the others are gone"
        );
        listener.stop().await;
    }

    #[tokio::test]
    async fn stalled_handshakes_leave_room_for_sessions() {
        let mut cluster = TestCluster::new(110);
        let east = secondary(&mut cluster);
        let limits = ClusterLimits {
            max_connections: 2,
            max_handshakes: 4,
            max_handshakes_per_ip: 2,
            ..fast_limits()
        };
        let listener = TestListener::start(primary(&cluster), limits).await;
        let connector = east.connector();
        let mut session = listener
            .connect(&connector, ClusterAlpn::Replication)
            .await
            .unwrap();

        let mut stalled = Vec::new();
        for last_octet in 2..12 {
            let source = format!("127.0.0.{last_octet}");
            for _ in 0..2 {
                stalled.push(connect_from(&source, listener.addr).await);
            }
        }
        // Give the accept loop time to count every stalled handshake.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut second = listener
            .connect(&connector, ClusterAlpn::Replication)
            .await
            .unwrap();
        assert_eq!(&echo(&mut second).await.unwrap(), b"ping");
        assert_eq!(&echo(&mut session).await.unwrap(), b"ping");
        listener.stop().await;
    }

    #[tokio::test]
    async fn full_handshake_pool_evicts_oldest() {
        let cluster = TestCluster::new(111);
        let limits = ClusterLimits {
            max_handshakes: 2,
            ..fast_limits()
        };
        let listener = TestListener::start(primary(&cluster), limits).await;
        let mut oldest = connect_from("127.0.0.2", listener.addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut middle = connect_from("127.0.0.3", listener.addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _newest = connect_from("127.0.0.4", listener.addr).await;

        assert_closed(&mut oldest).await;
        let mut buffer = [0u8; 1];
        let open = tokio::time::timeout(Duration::from_millis(300), middle.read(&mut buffer));
        assert!(open.await.is_err(), "only the oldest handshake is evicted");
        listener.stop().await;
    }

    #[tokio::test]
    async fn stalled_handshake_times_out() {
        let cluster = TestCluster::new(106);
        let limits = ClusterLimits {
            handshake_timeout: Duration::from_millis(200),
            ..ClusterLimits::default()
        };
        let listener = TestListener::start(primary(&cluster), limits).await;

        let mut silent = TcpStream::connect(listener.addr).await.unwrap();
        assert_closed(&mut silent).await;
        listener.stop().await;
    }

    #[tokio::test]
    async fn shutdown_closes_open_sessions() {
        let mut cluster = TestCluster::new(107);
        let east = secondary(&mut cluster);
        let listener = TestListener::start(primary(&cluster), fast_limits()).await;
        let mut stream = listener
            .connect(&east.connector(), ClusterAlpn::Replication)
            .await
            .unwrap();
        assert_eq!(&echo(&mut stream).await.unwrap(), b"ping");

        listener.stop().await;
        assert_closed(&mut stream).await;
    }
}
