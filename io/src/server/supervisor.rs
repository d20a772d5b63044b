//! The node's replication role at run time.
//!
//! The role lives in the core's storage (`primary/enable`, `secondary/enable`,
//! `revoke-secondary` write it), and the [`Supervisor`] follows it: while the node is an
//! unsealed primary its cluster port accepts the active secondaries and runs a session for
//! each; while it is a secondary it replicates from the primary in its bundle and its cluster
//! port refuses everyone; otherwise the cluster port refuses everyone. It reads the role again
//! whenever the core's replication generation moves and when the seal state changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::server::watch;
use coffer_core::Core;
use coffer_core::replication::ReplicationConfig;
use coffer_core::replication::activate;
use coffer_core::replication::activation::{BootstrapBundle, PrivateKey};
use coffer_core::replication::keys::key_offer;
use coffer_core::replication::live::ConnectionState;
use coffer_core::replication::role::{self, PrimaryCredentials, Role, SecondaryCredentials};
use coffer_core::replication::secondary::SecondaryState;
use coffer_core::storage::{ReadOnly, Storage};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

use super::activation::probe::parse_cluster_addr;
use super::cluster::replication::{
    Clock, SecondaryHooks, SecondaryParams, SessionHooks, SessionKeys, SessionParams,
    run_secondary, serve_session,
};
use super::cluster::{
    AcceptorState, ActiveCerts, ClusterAcceptor, ClusterAlpn, ClusterConnector, ClusterPeer,
    ReplicationHandler,
};
use super::environment::Environment;
use super::forwarding::{
    ClientLimits, ForwardClient, ForwardingLimits, NodeExecutor, serve_forwarding,
};
use super::net::{Network, Stream};
use super::node::{Node, RoleListener};
use super::storage::PinSnapshot;

/// How often the role is checked even when nothing announced a change.
const ROLE_POLL: Duration = Duration::from_millis(100);

/// The role the supervisor is running at the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Running {
    /// Sealed: nothing can be read, so nothing runs.
    Sealed,
    /// Replication is not enabled.
    Standalone,
    /// A primary of this replication set and epoch.
    Primary { cluster_id: String, epoch: u64 },
    /// A demoted primary of this replication set, which follows no primary.
    Demoted { cluster_id: String },
    /// A secondary with this id in this replication set.
    Secondary {
        cluster_id: String,
        secondary_id: String,
        /// The certificate it presents: a new activation for the same id brings a new one.
        certificate: Vec<u8>,
        /// The count of `sys/replication/recover` requests, so each one restarts the session.
        recover_requests: u64,
    },
}

/// Follows the node's replication role. See the module documentation.
pub struct Supervisor<S, E, N> {
    node: Arc<Node<S, E>>,
    network: N,
    config: ReplicationConfig,
    acceptor: watch::Sender<AcceptorState>,
    primary: Arc<Mutex<Option<Arc<PrimaryCredentials>>>>,
    secondary_task: Option<JoinHandle<()>>,
    running: Option<Running>,
    generation: u64,
    /// The certificates the cluster port accepts, one set for the supervisor's life: every
    /// acceptor shares it, so emptying it on a seal or replacing it on a revocation also ends
    /// the sessions an earlier acceptor let in.
    active: ActiveCerts,
}

impl<S, E, N> Supervisor<S, E, N>
where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
    N: Network + Clone,
{
    /// Creates a supervisor for `node` and the receiver its cluster listener reads the acceptor from.
    pub fn new(
        node: Arc<Node<S, E>>,
        network: N,
        config: ReplicationConfig,
    ) -> (Supervisor<S, E, N>, watch::Receiver<AcceptorState>) {
        let (acceptor, receiver) = watch::channel(AcceptorState::NotPrimary {
            reason: "the node is starting".to_owned(),
        });
        node.set_wal_wait(config.best_effort_wal_wait_duration);
        let active = ActiveCerts::new(Vec::new());
        node.set_role_listener(active_set_refresher(Arc::downgrade(&node), active.clone()));
        let supervisor = Supervisor {
            node,
            network,
            config,
            acceptor,
            primary: Arc::new(Mutex::new(None)),
            secondary_task: None,
            running: None,
            generation: u64::MAX,
            active,
        };
        (supervisor, receiver)
    }

    /// The handler that runs a primary's sessions on the cluster port.
    pub fn session_handler(&self) -> Arc<SessionHandler<S, E>> {
        Arc::new(SessionHandler {
            node: Arc::clone(&self.node),
            config: self.config.clone(),
            primary: Arc::clone(&self.primary),
            sessions: Mutex::new(BTreeMap::new()),
            next_session: AtomicU64::new(0),
        })
    }

    /// Follows the role until `stopped` turns true.
    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        loop {
            self.check();
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(ROLE_POLL) => {}
            }
        }
        self.stop_secondary();
    }

    fn check(&mut self) {
        let node = Arc::clone(&self.node);
        let core = node.core();
        if core.barrier.is_sealed() {
            self.apply(Running::Sealed, None);
            return;
        }
        let generation = core.replication_generation();
        let recover_requests = core.replication_live.snapshot().recover_requests;
        let recover_requested = matches!(
            &self.running,
            Some(Running::Secondary { recover_requests: seen, .. }) if *seen != recover_requests
        );
        if generation == self.generation
            && !recover_requested
            && !matches!(self.running, Some(Running::Sealed) | None)
        {
            return;
        }
        let mut rng = self.node.rng();
        let role = self
            .node
            .storage()
            .read(|txn| role::load_role(core, &mut ReadOnly(txn), &mut rng));
        match role {
            Ok(Ok(role)) => {
                self.generation = generation;
                let running = running_of(&role, recover_requests);
                self.apply(running, Some(role));
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading the replication role failed; retrying");
            }
            Err(error) => {
                tracing::warn!(%error, "reading the replication role failed; retrying");
            }
        }
    }

    fn apply(&mut self, running: Running, role: Option<Role>) {
        let changed = self.running.as_ref() != Some(&running);
        match role {
            Some(Role::Primary(credentials)) => self.run_primary(credentials, changed),
            Some(Role::Secondary(credentials)) => {
                if changed {
                    self.set_primary(None, "this node is a performance secondary");
                    self.start_secondary(credentials);
                }
            }
            Some(Role::Standalone) => {
                if changed {
                    self.stop_secondary();
                    self.set_primary(None, "replication is not enabled on this node");
                }
            }
            Some(Role::Demoted(_)) => {
                if changed {
                    self.stop_secondary();
                    self.set_primary(None, "this node is a demoted primary");
                }
            }
            None => {
                if changed {
                    self.stop_secondary();
                    self.set_primary(None, "this node is sealed");
                }
            }
        }
        if changed {
            tracing::info!(role = %describe(&running), "replication role");
        }
        self.running = Some(running);
    }

    fn run_primary(&mut self, credentials: PrimaryCredentials, changed: bool) {
        self.active.replace(credentials.active.clone());
        if !changed {
            *lock(&self.primary) = Some(Arc::new(credentials));
            return;
        }
        self.stop_secondary();
        match ClusterAcceptor::with_crypto(
            &credentials.ca_cert_der,
            &credentials.cert_der,
            &credentials.key,
            &credentials.cluster_id,
            self.active.clone(),
            &self.node.environment().tls_crypto(),
        ) {
            Ok(acceptor) => {
                *lock(&self.primary) = Some(Arc::new(credentials));
                self.acceptor
                    .send_replace(AcceptorState::Primary(Arc::new(acceptor)));
            }
            Err(error) => {
                tracing::error!(%error, "the primary's cluster credentials are unusable");
                self.set_primary(None, "the primary's cluster credentials are unusable");
            }
        }
    }

    fn set_primary(&self, credentials: Option<Arc<PrimaryCredentials>>, reason: &str) {
        if credentials.is_none() {
            // Ends every open session: a sealed or demoted node serves no one.
            self.active.replace(Vec::new());
        }
        *lock(&self.primary) = credentials;
        self.acceptor.send_replace(AcceptorState::NotPrimary {
            reason: reason.to_owned(),
        });
    }

    fn start_secondary(&mut self, credentials: SecondaryCredentials) {
        self.stop_secondary();
        let crypto = self.node.environment().tls_crypto();
        let connector =
            match ClusterConnector::with_crypto(&credentials.bundle, &credentials.key, &crypto) {
                Ok(connector) => connector,
                Err(error) => {
                    tracing::error!(%error, "the secondary's bundle is unusable; not replicating");
                    return;
                }
            };
        let addresses: Vec<SocketAddr> = credentials
            .bundle
            .primary_cluster_addrs
            .iter()
            .filter_map(|address| parse_cluster_addr(address).ok())
            .collect();
        let limits = ClientLimits {
            frames: ForwardingLimits::from_config(&self.config).frames,
            max_in_flight: self.config.forwarding_max_in_flight,
            ..ClientLimits::default()
        };
        let forwarder = ForwardClient::new(
            self.network.clone(),
            connector.clone(),
            addresses.clone(),
            limits,
        );
        self.node.set_forwarder(Some(Arc::new(forwarder)));
        let node = Arc::clone(&self.node);
        let network = self.network.clone();
        let config = self.config.clone();
        let task = tokio::spawn(async move {
            replicate(node, network, connector, addresses, credentials, config).await;
        });
        self.secondary_task = Some(task);
    }

    fn stop_secondary(&mut self) {
        self.node.set_forwarder(None);
        if let Some(task) = self.secondary_task.take() {
            task.abort();
            self.node.core().replication_live.clear_secondary();
        }
    }
}

/// Returns the role listener that replaces the active certificates as soon as a write changes
/// them, so a revocation is in force for every handshake after `revoke-secondary` returns. The
/// supervisor's next check does the rest (sessions, role changes).
fn active_set_refresher<S, E>(node: Weak<Node<S, E>>, active: ActiveCerts) -> RoleListener
where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
{
    Arc::new(move || {
        let Some(node) = node.upgrade() else {
            return;
        };
        let core = node.core();
        let mut rng = node.rng();
        let role = node
            .storage()
            .read(|txn| role::load_role(core, &mut ReadOnly(txn), &mut rng));
        if let Ok(Ok(Role::Primary(credentials))) = role {
            active.replace(credentials.active);
        }
    })
}

fn describe(running: &Running) -> String {
    match running {
        Running::Sealed => "sealed".to_owned(),
        Running::Standalone => "standalone".to_owned(),
        Running::Primary { cluster_id, epoch } => {
            format!("primary of {cluster_id} in epoch {epoch}")
        }
        Running::Demoted { cluster_id } => format!("demoted primary of {cluster_id}"),
        Running::Secondary {
            cluster_id,
            secondary_id,
            ..
        } => format!("secondary {secondary_id} of {cluster_id}"),
    }
}

fn running_of(role: &Role, recover_requests: u64) -> Running {
    match role {
        Role::Standalone => Running::Standalone,
        Role::Demoted(record) => Running::Demoted {
            cluster_id: record.cluster_id.clone(),
        },
        Role::Primary(credentials) => Running::Primary {
            cluster_id: credentials.cluster_id.clone(),
            epoch: credentials.epoch.number,
        },
        Role::Secondary(credentials) => Running::Secondary {
            cluster_id: credentials.bundle.cluster_id.clone(),
            secondary_id: credentials.bundle.secondary_id.clone(),
            certificate: credentials.bundle.secondary_cert_der.clone(),
            recover_requests,
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the node's secondary until the task is aborted.
async fn replicate<S, E, N>(
    node: Arc<Node<S, E>>,
    network: N,
    connector: ClusterConnector,
    addresses: Vec<SocketAddr>,
    credentials: SecondaryCredentials,
    config: ReplicationConfig,
) where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
    N: Network + Clone,
{
    let SecondaryCredentials {
        bundle,
        key,
        activated,
    } = credentials;
    let dialer = {
        let network = network.clone();
        move || {
            let network = network.clone();
            let connector = connector.clone();
            let addresses = addresses.clone();
            async move { dial(&network, &connector, &addresses).await }
        }
    };
    let params = SecondaryParams {
        config,
        cluster_id: bundle.cluster_id.clone(),
        secondary_id: bundle.secondary_id.clone(),
        epoch_fence: bundle.epoch.number,
    };
    let hooks = secondary_hooks(&node, bundle, key, activated);
    let clock = Clock::new(node.environment().now());
    let result = run_secondary(
        node.storage_handle(),
        node.core_handle(),
        dialer,
        params,
        clock,
        hooks,
    )
    .await;
    let Err(error) = result;
    tracing::error!(%error, "the secondary stopped replicating: its storage failed");
}

async fn dial<N: Network>(
    network: &N,
    connector: &ClusterConnector,
    addresses: &[SocketAddr],
) -> std::io::Result<tokio_rustls::client::TlsStream<N::Stream>> {
    let mut last = std::io::Error::other("the bundle lists no primary cluster address");
    for address in addresses {
        let stream = match network.connect(*address).await {
            Ok(stream) => stream,
            Err(error) => {
                last = std::io::Error::new(
                    error.kind(),
                    format!("connecting to the primary at {address} failed: {error}"),
                );
                continue;
            }
        };
        match connector.connect(stream, ClusterAlpn::Replication).await {
            Ok(tls) => return Ok(tls),
            Err(error) => {
                last = std::io::Error::other(format!(
                    "the TLS handshake with the primary at {address} failed: {error}"
                ));
            }
        }
    }
    Err(last)
}

fn secondary_hooks<S, E>(
    node: &Arc<Node<S, E>>,
    bundle: BootstrapBundle,
    key: PrivateKey,
    activated: bool,
) -> SecondaryHooks
where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
{
    let status_node = Arc::clone(node);
    let mut activated = activated;
    let offer_node = Arc::clone(node);
    SecondaryHooks {
        on_status: Box::new(move |status| {
            let core: &Core = status_node.core();
            core.replication_live.set_secondary_state(status.state);
            core.replication_live
                .set_connection_state(if status.connected {
                    ConnectionState::Ready
                } else {
                    ConnectionState::Connecting
                });
            if let Some(heard) = status.last_heard {
                core.replication_live.set_last_heartbeat(heard);
            }
            core.replication_live
                .set_traffic(status.bytes_received, status.bytes_sent);
            core.replication_live
                .set_merkle_sync_progress(status.sync_progress);
            let primary_head = status.primary_head.clone();
            let state = status.state;
            let reason = status.reason.clone();
            core.replication_live.update_secondary(|live| {
                if primary_head.is_some() {
                    live.primary_head = primary_head;
                }
                match state {
                    SecondaryState::Idle => live.last_error = Some(reason),
                    SecondaryState::StreamWals => live.last_error = None,
                    _ => {}
                }
            });
            if !activated && status.state == SecondaryState::StreamWals {
                let mut rng = status_node.rng();
                let marked = status_node
                    .storage()
                    .write(|txn| activate::mark_activated(core, txn, &mut rng));
                match marked {
                    Ok(()) => activated = true,
                    Err(error) => tracing::warn!(%error, "recording the finished bootstrap failed"),
                }
            }
        }),
        on_key_offer: Box::new(move |offer| {
            let core: &Core = offer_node.core();
            let accepted = offer_node
                .storage()
                .read(|txn| activate::accept_key_offer(core, txn, &bundle, &key, &offer));
            match accepted {
                Ok(Ok(())) => {
                    tracing::info!("installed the primary's keys");
                    Ok(())
                }
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(error.to_string()),
            }
        }),
    }
}

/// Runs a primary's replication session for each accepted secondary.
pub struct SessionHandler<S, E> {
    node: Arc<Node<S, E>>,
    config: ReplicationConfig,
    primary: Arc<Mutex<Option<Arc<PrimaryCredentials>>>>,
    /// The open session of each secondary: a number that identifies the session, and the
    /// sender that ends it.
    sessions: Mutex<BTreeMap<String, (u64, watch::Sender<()>)>>,
    next_session: AtomicU64,
}

impl<S, E> ReplicationHandler for SessionHandler<S, E>
where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
{
    async fn serve<St: Stream>(&self, stream: TlsStream<St>, peer: ClusterPeer) {
        let Some(credentials) = lock(&self.primary).clone() else {
            return;
        };
        let secondary_id = peer.secondary.secondary_id.clone();
        let offer_node = Arc::clone(&self.node);
        let offer_id = secondary_id.clone();
        let keys = SessionKeys {
            public_key: peer.public_key,
            offer: Box::new(move |public_key| {
                let core = offer_node.core();
                let mut rng = offer_node.rng();
                offer_node.storage().read(|txn| {
                    key_offer(core, &mut ReadOnly(txn), &mut rng, &offer_id, public_key)
                })?
            }),
            // The session offers the keys again itself before it ships a changed keyring.
            rekeyed: None,
        };
        let params = SessionParams {
            config: self.config.clone(),
            cluster_id: credentials.cluster_id.clone(),
            epoch: credentials.epoch.clone(),
            peer_id: Some(secondary_id.clone()),
        };
        let status_node = Arc::clone(&self.node);
        let status_id = secondary_id.clone();
        let hooks = SessionHooks {
            on_status: Box::new(move |status| {
                status_node
                    .core()
                    .replication_live
                    .update_session(&status_id, |peer| {
                        peer.connected = true;
                        peer.last_heartbeat = Some(status.last_heard);
                        peer.acked = status.acked;
                    });
            }),
            keys: Some(keys),
        };
        tracing::info!(%secondary_id, "replication session started");
        // The listener drops this future when the certificate is revoked, so the session's
        // end is recorded on drop.
        let _disconnected = Disconnected {
            node: Arc::clone(&self.node),
            secondary_id: secondary_id.clone(),
        };
        let clock = Clock::new(self.node.environment().now());
        // One session per secondary: a new connection replaces the one before it, which may
        // be a dead peer not yet timed out, so one certificate cannot hold many sessions and
        // their buffers.
        let (replaced, mut superseded) = watch::channel(());
        let number = self.next_session.fetch_add(1, Ordering::Relaxed);
        let previous = lock(&self.sessions).insert(secondary_id.clone(), (number, replaced));
        if let Some((_, previous)) = previous {
            let _ = previous.send(());
        }
        let session = serve_session(
            stream,
            self.node.storage_handle(),
            self.node.commit_feed().clone(),
            params,
            clock,
            hooks,
        );
        let reason = tokio::select! {
            biased;
            reason = session => reason,
            _ = superseded.changed() => "a newer connection of the same secondary replaced it".to_owned(),
        };
        {
            let mut sessions = lock(&self.sessions);
            if sessions
                .get(&secondary_id)
                .is_some_and(|(current, _)| *current == number)
            {
                sessions.remove(&secondary_id);
            }
        }
        tracing::info!(%secondary_id, %reason, "replication session ended");
    }

    async fn serve_forwarding<St: Stream>(&self, stream: TlsStream<St>, peer: ClusterPeer) {
        if lock(&self.primary).is_none() {
            return;
        }
        let secondary_id = peer.secondary.secondary_id.clone();
        let executor = Arc::new(NodeExecutor(Arc::clone(&self.node)));
        let limits = ForwardingLimits::from_config(&self.config);
        let reason = serve_forwarding(stream, secondary_id.clone(), executor, limits).await;
        tracing::info!(%secondary_id, %reason, "forwarding session ended");
    }
}

/// Marks a secondary's session as disconnected in the live status when dropped.
struct Disconnected<S: Storage + 'static, E: Environment> {
    node: Arc<Node<S, E>>,
    secondary_id: String,
}

impl<S: Storage + 'static, E: Environment> Drop for Disconnected<S, E> {
    fn drop(&mut self) {
        self.node
            .core()
            .replication_live
            .update_session(&self.secondary_id, |peer| peer.connected = false);
    }
}
