//! The primary's side: one [`PrimarySession`] per connected secondary.

use std::sync::{Arc, Mutex, PoisonError};

use crate::server::watch;
use coffer_core::Timestamp;
use coffer_core::barrier::seal::KEYRING_KEY;
use coffer_core::error::Error;
use coffer_core::replication::config::ReplicationConfig;
use coffer_core::replication::keys::KeyOffer;
use coffer_core::replication::position::Epoch;
use coffer_core::replication::primary::{PrimaryEvent, PrimarySession, PrimaryView, SessionState};
use coffer_core::replication::shipper::LogShipper;
use coffer_core::storage::{Partition, Transaction};

use super::io::{Connection, Transfer};
use super::{Clock, deadline};
use crate::server::net::Stream;
use crate::server::storage::PinSnapshot;
use crate::server::writer::CommitFeed;

/// Settings of one session.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Limits and timers.
    pub config: ReplicationConfig,
    /// The replication set; a secondary of another set is rejected.
    pub cluster_id: String,
    /// The primary's epoch.
    pub epoch: Epoch,
    /// The secondary id the connection authenticated as, from its client certificate. When
    /// set, a `Hello` that names another id closes the session before any data is sent.
    pub peer_id: Option<String>,
}

/// A session's state for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    /// The secondary's id, once its `Hello` arrived.
    pub secondary_id: Option<String>,
    /// The session's state; `Closed` is reported last.
    pub state: SessionState,
    /// The last index the secondary acknowledged while streaming.
    pub acked: Option<u64>,
    /// When bytes last arrived from the secondary.
    pub last_heard: Timestamp,
}

/// Builds a key offer sealed to a secondary's Ed25519 public key.
pub type OfferKeys = Box<dyn FnMut(&[u8; 32]) -> Result<KeyOffer, Error> + Send>;

/// The primary's keys for the secondary, offered after its first valid `Hello` and again
/// after each rekey.
pub struct SessionKeys {
    /// The Ed25519 public key of the secondary's client certificate.
    pub public_key: [u8; 32],
    /// Builds the offer, once at the start and once after each change of `rekeyed`.
    pub offer: OfferKeys,
    /// A channel that changes after each rekey, when given, so the session offers new keys.
    pub rekeyed: Option<watch::Receiver<u64>>,
}

/// Callbacks of a session.
pub struct SessionHooks {
    /// Receives the session's status after every input.
    pub on_status: Box<dyn FnMut(&SessionStatus) + Send>,
    /// The keys to offer, when the secondary receives them over this connection.
    pub keys: Option<SessionKeys>,
}

impl Default for SessionHooks {
    fn default() -> SessionHooks {
        SessionHooks {
            on_status: Box::new(|_| {}),
            keys: None,
        }
    }
}

/// Serves one connected secondary over `stream` until the session closes, and returns why it
/// closed.
///
/// Every input runs against a fresh pinned snapshot of `storage` as its live view, and the
/// session wakes on each head index the `feed` announces. When the session emits
/// `PinSnapshot`, the live view of that input becomes the pinned one, so the two are equal as
/// the session requires. No read transaction outlives its input except the pinned one.
pub async fn serve_session<S, St>(
    stream: St,
    storage: Arc<S>,
    feed: CommitFeed,
    params: SessionParams,
    clock: Clock,
    hooks: SessionHooks,
) -> String
where
    S: PinSnapshot + 'static,
    St: Stream,
{
    let SessionParams {
        config,
        cluster_id,
        epoch,
        peer_id,
    } = params;
    let max_outbound = config.max_frame_payload.saturating_mul(4);
    let now = clock.now();
    let mut machine = PrimarySession::new(config, cluster_id, epoch, now);
    if let Some(peer_id) = peer_id {
        machine.expect_secondary(peer_id);
    }
    let SessionHooks { on_status, keys } = hooks;
    let mut driver = Driver {
        machine,
        storage,
        shipper: Arc::clone(feed.shipper()),
        pinned: None,
        on_status,
        closed: None,
        last_heard: now,
    };
    let mut conn = Connection::new(stream, max_outbound);
    let mut head = feed.subscribe();
    head.mark_unchanged();
    let mut keys = keys;
    // The keyring record the last offer was built from: a commit that changes it (a rotation,
    // a rekey) is preceded by a new offer, so the secondary never receives data it cannot open.
    let mut offered_keyring = keyring_record(&*driver.storage);
    if let Some(keys) = &mut keys {
        let offer = build_offer(keys);
        for frame in driver.offer(offer) {
            conn.queue(&frame);
        }
    }
    driver.report();

    let reason = loop {
        if let Some(reason) = driver.closed.take() {
            break reason;
        }
        let timer = deadline(&clock, driver.machine.poll_timeout().map(|(at, _)| at));
        let accepting = !conn.backlogged();
        let wake = tokio::select! {
            biased;
            transfer = conn.transfer(accepting) => Wake::Transfer(transfer),
            changed = head.changed(), if accepting => Wake::Commit(changed.is_ok()),
            () = rekeyed(&mut keys) => Wake::Rekey,
            () = tokio::time::sleep_until(timer) => Wake::Timer,
        };
        let now = clock.now();
        let frames = match wake {
            Wake::Transfer(Transfer::Received(count)) => {
                driver.last_heard = now;
                let bytes = conn.received(count);
                driver.input(|machine, view| machine.handle_bytes(now, bytes, view))
            }
            Wake::Transfer(Transfer::Closed(reason)) => break reason,
            Wake::Commit(false) => break "the storage writer stopped".to_owned(),
            Wake::Commit(true) => {
                head.mark_unchanged();
                let mut frames = Vec::new();
                if let Some(keys) = &mut keys {
                    let keyring = keyring_record(&*driver.storage);
                    if keyring != offered_keyring {
                        offered_keyring = keyring;
                        let offer = build_offer(keys);
                        frames.extend(driver.offer(offer));
                    }
                }
                frames.extend(driver.input(|machine, view| machine.handle_commit(now, view)));
                frames
            }
            Wake::Timer => driver.input(|machine, view| machine.handle_timeout(now, view)),
            Wake::Rekey => match &mut keys {
                Some(keys) => {
                    let offer = build_offer(keys);
                    driver.offer(offer)
                }
                None => Vec::new(),
            },
        };
        for frame in frames {
            conn.queue(&frame);
        }
    };

    driver.pinned = None;
    conn.close().await;
    driver.report_closed();
    tracing::info!(secondary = ?driver.machine.secondary_id(), %reason, "replication session ended");
    reason
}

enum Wake {
    Transfer(Transfer),
    Commit(bool),
    Rekey,
    Timer,
}

/// Returns the stored keyring record, or `None` when it cannot be read (the offer then reports why).
fn keyring_record<S: PinSnapshot>(storage: &S) -> Option<Vec<u8>> {
    storage
        .read(|txn| txn.get(Partition::Shared, KEYRING_KEY))
        .ok()
        .and_then(Result::ok)
        .flatten()
}

fn build_offer(keys: &mut SessionKeys) -> Result<KeyOffer, Error> {
    (keys.offer)(&keys.public_key)
}

/// Waits for the next rekey; without a rekey channel, or once it closes, it never returns.
async fn rekeyed(keys: &mut Option<SessionKeys>) {
    let Some(receiver) = keys.as_mut().and_then(|keys| keys.rekeyed.as_mut()) else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct Driver<S: PinSnapshot> {
    machine: PrimarySession,
    storage: Arc<S>,
    shipper: Arc<Mutex<LogShipper>>,
    pinned: Option<S::Snapshot>,
    on_status: Box<dyn FnMut(&SessionStatus) + Send>,
    closed: Option<String>,
    last_heard: Timestamp,
}

impl<S: PinSnapshot> Driver<S> {
    /// Hands the session a key offer, or closes it when the offer could not be built.
    fn offer(&mut self, offer: Result<KeyOffer, Error>) -> Vec<Vec<u8>> {
        match offer {
            Ok(offer) => self.input(|machine, _| machine.offer_keys(offer)),
            Err(error) => {
                let secondary = self.machine.secondary_id().map(str::to_owned);
                tracing::error!(%error, ?secondary, "failed to build the key offer for a secondary");
                self.closed = Some(format!("the key offer could not be built: {error}"));
                Vec::new()
            }
        }
    }

    /// Runs one input against a fresh live view and returns the frames to send.
    fn input(&mut self, body: impl FnOnce(&mut PrimarySession, &PrimaryView<'_>)) -> Vec<Vec<u8>> {
        let live = match self.storage.pin_snapshot() {
            Ok(live) => live,
            Err(error) => {
                tracing::error!(%error, "replication session cannot read storage");
                self.closed = Some(format!("cannot read the primary's storage: {error}"));
                return Vec::new();
            }
        };
        {
            let shipper = self.shipper.lock().unwrap_or_else(PoisonError::into_inner);
            let view = PrimaryView {
                live: &live,
                shipper: &shipper,
                snapshot: self
                    .pinned
                    .as_ref()
                    .map(|pinned| pinned as &dyn Transaction),
            };
            body(&mut self.machine, &view);
        }
        self.drain(live)
    }

    fn drain(&mut self, live: S::Snapshot) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(frame) = self.machine.poll_transmit() {
            frames.push(frame);
        }
        // Every pin of one input requests the same state, its live view, so only the last pin
        // or release of the input matters.
        let mut pin = None;
        while let Some(event) = self.machine.poll_event() {
            match event {
                PrimaryEvent::PinSnapshot { sync, position } => {
                    tracing::debug!(sync, %position, "pinned a snapshot for a merkle sync");
                    pin = Some(true);
                }
                PrimaryEvent::ReleaseSnapshot { sync } => {
                    tracing::debug!(sync, "released the snapshot of a merkle sync");
                    pin = Some(false);
                }
                // The session logs its transitions itself, with the guard values of both sides.
                PrimaryEvent::StateChanged { .. } => {}
                PrimaryEvent::Close { reason } => {
                    self.closed.get_or_insert(reason);
                }
            }
        }
        match pin {
            Some(true) => self.pinned = Some(live),
            Some(false) => self.pinned = None,
            None => {}
        }
        self.report();
        frames
    }

    fn status(&self) -> SessionStatus {
        SessionStatus {
            secondary_id: self.machine.secondary_id().map(str::to_owned),
            state: self.machine.state(),
            acked: self.machine.acked(),
            last_heard: self.last_heard,
        }
    }

    fn report(&mut self) {
        let status = self.status();
        (self.on_status)(&status);
    }

    fn report_closed(&mut self) {
        let status = SessionStatus {
            state: SessionState::Closed,
            ..self.status()
        };
        (self.on_status)(&status);
    }
}
