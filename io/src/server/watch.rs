//! A single-value channel with the interface of `tokio::sync::watch`, whose waiters wake in
//! the order they started waiting.
//!
//! tokio's `watch::Receiver::changed` and `wait_for` (tokio 1.54) park each waiter on one of
//! eight `Notify` shards picked by the runtime's random number generator, and a send wakes the
//! shards in index order. So when several tasks wait on one channel, as the replication
//! sessions of a primary wait for its WAL head, the order in which they wake and write to the
//! network changes from run to run. A turmoil simulation cannot seed that generator, so the
//! node uses this channel, which parks every waiter on one `Notify` (first in, first woken).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

/// The error of waiting on a channel whose sender was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError;

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sender of the channel was dropped")
    }
}

impl std::error::Error for RecvError {}

/// A read lock on the channel's current value.
pub type Ref<'a, T> = RwLockReadGuard<'a, T>;

struct Shared<T> {
    value: RwLock<T>,
    /// The number of sends so far, incremented while the value's write lock is held.
    version: AtomicU64,
    closed: AtomicBool,
    notify: Notify,
}

impl<T> Shared<T> {
    fn read(&self) -> Ref<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// The sending half; dropping it closes the channel.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half, which remembers the last version it has seen.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

/// Creates a channel holding `initial`, which the returned receiver counts as seen.
pub fn channel<T>(initial: T) -> (Sender<T>, Receiver<T>) {
    let sender = Sender::new(initial);
    let receiver = sender.subscribe();
    (sender, receiver)
}

impl<T> Sender<T> {
    /// Creates a channel holding `initial`, without a receiver.
    pub fn new(initial: T) -> Sender<T> {
        Sender {
            shared: Arc::new(Shared {
                value: RwLock::new(initial),
                version: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                notify: Notify::new(),
            }),
        }
    }

    /// Stores `value`, wakes every waiting receiver and returns the previous value.
    pub fn send_replace(&self, value: T) -> T {
        let previous = {
            let mut current = self
                .shared
                .value
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.version.fetch_add(1, Ordering::AcqRel);
            std::mem::replace(&mut *current, value)
        };
        self.shared.notify.notify_waiters();
        previous
    }

    /// Stores `value` and wakes every waiting receiver. Unlike tokio's `send`, it also stores
    /// the value when no receiver exists, so it never fails.
    pub fn send(&self, value: T) -> Result<(), RecvError> {
        self.send_replace(value);
        Ok(())
    }

    /// Locks the current value for reading.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.read()
    }

    /// Creates a receiver that counts the current value as seen.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver {
            shared: Arc::clone(&self.shared),
            seen: self.shared.version(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.notify.notify_waiters();
    }
}

impl<T> Receiver<T> {
    /// Locks the current value for reading, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.read()
    }

    /// Locks the current value for reading and marks it seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let value = self.shared.read();
        self.seen = self.shared.version();
        value
    }

    /// Marks the current value seen.
    pub fn mark_unchanged(&mut self) {
        self.seen = self.shared.version();
    }

    /// Returns whether a value was sent since this receiver last marked one seen; fails once
    /// the sender is dropped.
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(RecvError);
        }
        Ok(self.shared.version() != self.seen)
    }

    /// Waits for a value this receiver has not seen and marks it seen. Fails when the sender
    /// is dropped and every sent value was seen.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registering before the check means a send between the check and the wait
            // still wakes this receiver.
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            let version = self.shared.version();
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(RecvError);
            }
            notified.await;
        }
    }

    /// Waits until the current value satisfies `condition`, checking the current value first,
    /// and marks it seen. Fails when the sender is dropped first.
    pub async fn wait_for(
        &mut self,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<(), RecvError> {
        loop {
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            {
                let value = self.shared.read();
                self.seen = self.shared.version();
                if condition(&value) {
                    return Ok(());
                }
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(RecvError);
            }
            notified.await;
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        Receiver {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}
