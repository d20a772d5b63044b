//! The primary's side: one [`PrimarySession`] per connected secondary.

use std::sync::{Arc, Mutex, PoisonError};

use coffer_core::Timestamp;
use coffer_core::replication::config::ReplicationConfig;
use coffer_core::replication::position::Epoch;
use coffer_core::replication::primary::{PrimaryEvent, PrimarySession, PrimaryView, SessionState};
use coffer_core::replication::shipper::LogShipper;
use coffer_core::storage::Transaction;

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
    /// set, a `Hello` that names another id closes the session before anything is sent.
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

/// Callbacks of a session.
pub struct SessionHooks {
    /// Receives the session's status after every input.
    pub on_status: Box<dyn FnMut(&SessionStatus) + Send>,
}

impl Default for SessionHooks {
    fn default() -> SessionHooks {
        SessionHooks {
            on_status: Box::new(|_| {}),
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
    let mut driver = Driver {
        machine: PrimarySession::new(config, cluster_id, epoch, now),
        storage,
        shipper: Arc::clone(feed.shipper()),
        pinned: None,
        peer_id,
        hooks,
        closed: None,
        last_heard: now,
    };
    let mut conn = Connection::new(stream, max_outbound);
    let mut head = feed.subscribe();
    head.borrow_and_update();
    driver.report();

    let reason = loop {
        if let Some(reason) = driver.closed.take() {
            break reason;
        }
        let timer = deadline(&clock, driver.machine.poll_timeout().map(|(at, _)| at));
        let accepting = !conn.backlogged();
        let wake = tokio::select! {
            transfer = conn.transfer(accepting) => Wake::Transfer(transfer),
            changed = head.changed(), if accepting => Wake::Commit(changed.is_ok()),
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
                head.borrow_and_update();
                driver.input(|machine, view| machine.handle_commit(now, view))
            }
            Wake::Timer => driver.input(|machine, view| machine.handle_timeout(now, view)),
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
    Timer,
}

struct Driver<S: PinSnapshot> {
    machine: PrimarySession,
    storage: Arc<S>,
    shipper: Arc<Mutex<LogShipper>>,
    pinned: Option<S::Snapshot>,
    peer_id: Option<String>,
    hooks: SessionHooks,
    closed: Option<String>,
    last_heard: Timestamp,
}

impl<S: PinSnapshot> Driver<S> {
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
        if let Some(reason) = self.impostor() {
            tracing::warn!(%reason, "replication session rejected a secondary");
            self.closed = Some(reason);
            return Vec::new();
        }
        self.report();
        frames
    }

    /// Returns why the session must close when the secondary named an id other than the one
    /// its certificate carries.
    fn impostor(&self) -> Option<String> {
        let expected = self.peer_id.as_deref()?;
        let named = self.machine.secondary_id()?;
        (named != expected).then(|| {
            format!("the secondary says it is {named:?}, but its certificate is for {expected:?}")
        })
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
        (self.hooks.on_status)(&status);
    }

    fn report_closed(&mut self) {
        let status = SessionStatus {
            state: SessionState::Closed,
            ..self.status()
        };
        (self.hooks.on_status)(&status);
    }
}
