//! The secondary's side: the node's [`Secondary`] over connections from a [`Dialer`].

use std::convert::Infallible;
use std::sync::Arc;

use coffer_core::replication::config::ReplicationConfig;
use coffer_core::replication::keys::KeyOffer;
use coffer_core::replication::live::SyncCounts;
use coffer_core::replication::position::Position;
use coffer_core::replication::role;
use coffer_core::replication::secondary::{Guard, Secondary, SecondaryEvent, SecondaryState};
use coffer_core::storage::{Partition, Storage, StorageError};
use coffer_core::{Core, Timestamp};

use super::io::{Connection, Transfer};
use super::{Clock, Dialer, deadline};

/// The most received bytes applied in one write transaction. A secondary that is behind
/// receives faster than it commits, so it applies its backlog in transactions of this size
/// rather than one per network read.
const APPLY_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Identity and settings of the secondary.
#[derive(Clone, Debug)]
pub struct SecondaryParams {
    /// Limits and timers.
    pub config: ReplicationConfig,
    /// The replication set.
    pub cluster_id: String,
    /// This secondary's id.
    pub secondary_id: String,
    /// The lowest epoch number a primary may have: the epoch of the bundle this node follows.
    pub epoch_fence: u64,
}

/// The secondary's replication state for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondaryStatus {
    /// The state.
    pub state: SecondaryState,
    /// The reason for the last change of state.
    pub reason: String,
    /// This node's position and Merkle root at the last change.
    pub local: Guard,
    /// The primary's last known position and root.
    pub remote: Option<Guard>,
    /// Whether a connection to the primary is open.
    pub connected: bool,
    /// When bytes last arrived from the primary.
    pub last_heard: Option<Timestamp>,
    /// Progress of the running Merkle sync, once its keys are known.
    pub sync_progress: Option<SyncCounts>,
    /// Bytes received from the primary, over every connection of this driver.
    pub bytes_received: u64,
    /// Bytes queued for the primary, over every connection of this driver.
    pub bytes_sent: u64,
    /// The primary's head as of its last `StreamStart` or heartbeat.
    pub primary_head: Option<Position>,
}

/// Opens and installs a key offer from the primary. An error closes the connection, and the
/// secondary reconnects to receive a new offer.
pub type InstallKeys = Box<dyn FnMut(KeyOffer) -> Result<(), String> + Send>;

/// Callbacks of the secondary's driver.
pub struct SecondaryHooks {
    /// Receives the status after every change of state or connection, and after bytes arrive.
    pub on_status: Box<dyn FnMut(&SecondaryStatus) + Send>,
    /// Receives each key offer, before the driver handles what the primary sent after it.
    pub on_key_offer: InstallKeys,
}

impl Default for SecondaryHooks {
    fn default() -> SecondaryHooks {
        SecondaryHooks {
            on_status: Box::new(|_| {}),
            on_key_offer: Box::new(
                |_| Err("this node cannot install keys from the primary".into()),
            ),
        }
    }
}

/// Replicates from the primary into `storage` until the future is dropped.
///
/// The bytes that have arrived, up to [`APPLY_BATCH_BYTES`], are applied in one
/// `storage.write` transaction, and the caches
/// of `core` reload the shared keys it changed. When applying fails, the machine is rebuilt
/// from storage after its reconnect delay, because its cached position may be ahead of what
/// committed. Returns only when storage cannot be read to rebuild it.
///
/// NOTE: the write runs on the task's thread, so an LMDB commit blocks it for the length of its
/// disk flush.
pub async fn run_secondary<S, D>(
    storage: Arc<S>,
    core: Arc<Core>,
    dialer: D,
    params: SecondaryParams,
    clock: Clock,
    hooks: SecondaryHooks,
) -> Result<Infallible, StorageError>
where
    S: Storage + 'static,
    D: Dialer,
{
    let machine = new_machine(&*storage, &params)?;
    let status = SecondaryStatus {
        state: machine.state(),
        reason: "not started".into(),
        local: Guard {
            position: machine.position().clone(),
            root: machine.root(),
        },
        remote: None,
        connected: false,
        last_heard: None,
        sync_progress: None,
        bytes_received: 0,
        bytes_sent: 0,
        primary_head: None,
    };
    let mut runner = Runner {
        machine,
        storage,
        core,
        dialer,
        params,
        clock,
        hooks,
        conn: None,
        status,
    };
    runner.run().await
}

fn new_machine<S: Storage>(
    storage: &S,
    params: &SecondaryParams,
) -> Result<Secondary, StorageError> {
    storage.read(|txn| {
        Secondary::new(
            params.config.clone(),
            params.cluster_id.clone(),
            params.secondary_id.clone(),
            txn,
        )
        .map(|machine| machine.with_epoch_fence(params.epoch_fence))
    })?
}

enum Wake {
    Transfer(Transfer),
    Timer,
}

struct Runner<S, D: Dialer> {
    machine: Secondary,
    storage: Arc<S>,
    core: Arc<Core>,
    dialer: D,
    params: SecondaryParams,
    clock: Clock,
    hooks: SecondaryHooks,
    conn: Option<Connection<D::Stream>>,
    status: SecondaryStatus,
}

impl<S: Storage, D: Dialer> Runner<S, D> {
    async fn run(&mut self) -> Result<Infallible, StorageError> {
        self.machine.start(self.clock.now());
        loop {
            self.drain().await;
            let timer = deadline(&self.clock, self.machine.poll_timeout().map(|(at, _)| at));
            let wake = match &mut self.conn {
                Some(conn) => tokio::select! {
                    biased;
                    transfer = conn.transfer(true) => Wake::Transfer(transfer),
                    () = tokio::time::sleep_until(timer) => Wake::Timer,
                },
                None => {
                    tokio::time::sleep_until(timer).await;
                    Wake::Timer
                }
            };
            let now = self.clock.now();
            match wake {
                Wake::Transfer(Transfer::Received(count)) => self.apply(now, count).await?,
                Wake::Transfer(Transfer::Closed(reason)) => {
                    self.set_connection(None);
                    self.machine.handle_disconnected(now, &reason);
                }
                Wake::Timer => self.machine.handle_timeout(now),
            }
        }
    }

    /// Applies received bytes in one write transaction.
    async fn apply(&mut self, now: Timestamp, count: usize) -> Result<(), StorageError> {
        let Some(conn) = &mut self.conn else {
            return Ok(());
        };
        let count = conn.read_ready(count, APPLY_BATCH_BYTES);
        let bytes = conn.received(count);
        self.status.bytes_received += count as u64;
        let machine = &mut self.machine;
        let applied = self.storage.write(|txn| {
            if !role::is_following(txn)? {
                return Ok(false);
            }
            machine.handle_bytes(now, bytes, txn).map(|()| true)
        });
        self.status.last_heard = Some(now);
        self.status.sync_progress = self.machine.sync_counts();
        self.status.primary_head = self.machine.primary_head().cloned();
        match applied {
            Ok(true) => {
                self.report();
                Ok(())
            }
            Ok(false) => {
                // Promoted or disabled: the supervisor stops this driver shortly.
                if let Some(conn) = self.set_connection(None) {
                    conn.close().await;
                }
                let reason = "this node is no longer a secondary; nothing more is applied";
                self.machine.handle_disconnected(now, reason);
                Ok(())
            }
            Err(error) => self.restart(error).await,
        }
    }

    /// Drops the connection and rebuilds the machine from what storage committed.
    async fn restart(&mut self, error: StorageError) -> Result<(), StorageError> {
        let delay = self.machine.backoff();
        tracing::error!(%error, ?delay, "applying replicated data failed; restarting replication from storage");
        if let Some(conn) = self.set_connection(None) {
            conn.close().await;
        }
        tokio::time::sleep(delay).await;
        self.machine = new_machine(&*self.storage, &self.params)?;
        self.machine.start(self.clock.now());
        Ok(())
    }

    /// Sends the machine's frames and handles its events until both queues are empty.
    async fn drain(&mut self) {
        loop {
            while let Some(frame) = self.machine.poll_transmit() {
                // Frames produced without a connection belong to none and are dropped.
                if let Some(conn) = &mut self.conn {
                    conn.queue(&frame);
                    self.status.bytes_sent += frame.len() as u64;
                }
            }
            let Some(event) = self.machine.poll_event() else {
                return;
            };
            self.handle_event(event).await;
        }
    }

    async fn handle_event(&mut self, event: SecondaryEvent) {
        match event {
            SecondaryEvent::Connect => self.connect().await,
            SecondaryEvent::Disconnect { reason } => {
                tracing::debug!(%reason, "closing the connection to the primary");
                if let Some(conn) = self.set_connection(None) {
                    conn.close().await;
                }
            }
            // The machine logs each transition at info with the guard values of both sides.
            SecondaryEvent::StateChanged {
                to,
                reason,
                local,
                remote,
                ..
            } => {
                self.status.state = to;
                self.status.reason = reason;
                self.status.local = local;
                self.status.remote = remote;
                self.report();
            }
            SecondaryEvent::Applied { changed_keys, .. } => self.reload(changed_keys),
            // The machine logs rejections at warn.
            SecondaryEvent::Rejected { .. } => {}
            SecondaryEvent::KeyOffer(offer) => self.install_keys(offer).await,
        }
    }

    async fn install_keys(&mut self, offer: KeyOffer) {
        let Err(reason) = (self.hooks.on_key_offer)(offer) else {
            tracing::info!("installed the keys the primary offered");
            return;
        };
        tracing::error!(%reason, "failed to install the keys the primary offered");
        if let Some(conn) = self.set_connection(None) {
            conn.close().await;
        }
        let reason = format!("installing the primary's keys failed: {reason}");
        self.machine.handle_disconnected(self.clock.now(), &reason);
    }

    async fn connect(&mut self) {
        if let Some(old) = self.set_connection(None) {
            old.close().await;
        }
        let timeout = self.params.config.heartbeat_timeout;
        let dialed = tokio::time::timeout(timeout, self.dialer.dial()).await;
        let now = self.clock.now();
        match dialed {
            Ok(Ok(stream)) => {
                let max_outbound = self.params.config.max_frame_payload.saturating_mul(4);
                self.set_connection(Some(Connection::new(stream, max_outbound)));
                self.machine.handle_connected(now);
            }
            Ok(Err(error)) => {
                let reason = format!("connecting to the primary failed: {error}");
                self.machine.handle_disconnected(now, &reason);
            }
            Err(_) => {
                let reason = format!("connecting to the primary timed out after {timeout:?}");
                self.machine.handle_disconnected(now, &reason);
            }
        }
    }

    /// Replaces the connection and returns the old one.
    fn set_connection(
        &mut self,
        conn: Option<Connection<D::Stream>>,
    ) -> Option<Connection<D::Stream>> {
        let connected = conn.is_some();
        let old = std::mem::replace(&mut self.conn, conn);
        if self.status.connected != connected {
            self.status.connected = connected;
            self.report();
        }
        old
    }

    fn reload(&self, keys: Vec<String>) {
        let changed: Vec<(Partition, String)> = keys
            .into_iter()
            .map(|key| (Partition::Shared, key))
            .collect();
        match self
            .storage
            .read(|txn| self.core.reload(txn, Some(&changed)))
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "failed to reload caches after replicated writes")
            }
            Err(error) => tracing::error!(%error, "failed to open a read transaction for reload"),
        }
    }

    fn report(&mut self) {
        (self.hooks.on_status)(&self.status);
    }
}
