//! Runs the replication state machines of `coffer_core::replication` over byte streams and
//! real storage.
//!
//! [`serve_session`] runs one [`PrimarySession`] for one connected secondary; [`run_secondary`]
//! runs a node's [`Secondary`] over a [`Dialer`]. Both follow the machines' run-loop rule:
//! after every input (received bytes, a commit, a timer), drain `poll_transmit` and
//! `poll_event`, then arm `poll_timeout`. The streams are plain [`Stream`]s, so the cluster TLS
//! layer wraps them without changes here.
//!
//! [`PrimarySession`]: coffer_core::replication::primary::PrimarySession
//! [`Secondary`]: coffer_core::replication::secondary::Secondary
//! [`Stream`]: crate::server::net::Stream

mod io;
mod secondary;
mod session;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use coffer_core::Timestamp;
use tokio::time::Instant;

use crate::server::net::Stream;

pub use secondary::{InstallKeys, SecondaryHooks, SecondaryParams, SecondaryStatus, run_secondary};
pub use session::{
    OfferKeys, SessionHooks, SessionKeys, SessionParams, SessionStatus, serve_session,
};

/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How long a closing connection may take to send what is still queued, such as the `Error`
/// message that explains the close.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens connections to the primary. The cluster TLS connector implements it over a TCP
/// dialer; tests implement it over in-memory pipes.
pub trait Dialer: Send + Sync + 'static {
    /// The connected stream.
    type Stream: Stream;

    /// Opens one connection to the primary.
    fn dial(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl<F, Fut, S> Dialer for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<S>> + Send,
    S: Stream,
{
    type Stream = S;

    fn dial(&self) -> impl Future<Output = std::io::Result<S>> + Send {
        self()
    }
}

/// Maps the machines' [`Timestamp`]s to tokio instants. The machines only compare timestamps
/// with each other, so the clock starts at any wall-clock reading and then follows tokio's
/// clock, which tests can pause and advance.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
    at: Timestamp,
}

impl Clock {
    /// Starts a clock that reads `now` at this instant.
    pub fn new(now: Timestamp) -> Clock {
        Clock {
            origin: Instant::now(),
            at: now,
        }
    }

    /// Returns the current time.
    pub fn now(&self) -> Timestamp {
        self.at.saturating_add(self.origin.elapsed())
    }

    /// Returns the tokio instant of `at`. A time before the clock started maps to its start,
    /// and a time beyond what an instant can hold maps to a day from now.
    pub fn instant(&self, at: Timestamp) -> Instant {
        self.origin
            .checked_add(at.saturating_since(self.at))
            .unwrap_or_else(far_future)
    }
}

/// Returns the instant to sleep until: the machine's timer, or a day from now without one.
fn deadline(clock: &Clock, timer: Option<Timestamp>) -> Instant {
    match timer {
        Some(at) => clock.instant(at),
        None => far_future(),
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(24 * 60 * 60)
}
