//! Closing API connections that carry no request, so idle or silent clients cannot hold
//! connection slots.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection and when the connection last changed between busy
/// and idle.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Whether a complete request head has arrived on this connection.
    served: bool,
    idle_since: Instant,
}

/// A request in flight: the connection counts as busy until every guard is dropped.
pub(super) struct InFlight(Arc<Activity>);

impl Activity {
    /// Creates the activity record of a connection accepted now.
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                served: false,
                idle_since: Instant::now(),
            }),
        })
    }

    /// Marks a request whose head has arrived as in flight until the guard is dropped.
    pub(super) fn start(self: &Arc<Activity>) -> InFlight {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.in_flight += 1;
        state.served = true;
        InFlight(Arc::clone(self))
    }

    /// Completes once the connection has had no request in flight for `handshake_timeout`
    /// since it was accepted (before the first request head) or for `idle_timeout` since its
    /// last response.
    pub(super) async fn expired(&self, handshake_timeout: Duration, idle_timeout: Duration) {
        loop {
            let deadline = {
                let state = self
                    .state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let timeout = if state.served {
                    idle_timeout
                } else {
                    handshake_timeout
                };
                (state.in_flight == 0).then(|| state.idle_since + timeout)
            };
            match deadline {
                Some(deadline) if Instant::now() >= deadline => return,
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                // A busy connection is checked again later; its requests are bounded by the
                // request timeout.
                None => tokio::time::sleep(handshake_timeout.min(idle_timeout)).await,
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self
            .0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}
