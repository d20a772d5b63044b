//! The clock and the randomness a node hands to the core and to cluster TLS, behind a trait so
//! the simulation can supply simulated ones.

use std::time::{SystemTime, UNIX_EPOCH};

use coffer_core::Timestamp;
use rand::RngCore;
use rand::rngs::OsRng;

use super::cluster::TlsCrypto;

/// The clock and the source of RNG seeds of a node.
pub trait Environment: Send + Sync + 'static {
    /// Returns the current wall-clock time.
    fn now(&self) -> Timestamp;

    /// Draws a fresh seed for one request's `ChaCha20Rng`.
    fn rng_seed(&self) -> [u8; 32];

    /// Returns the crypto provider and clock of the node's TLS (the API listener, the cluster
    /// port and the activation's unwrap request): ring and the system clock unless an
    /// environment supplies its own.
    fn tls_crypto(&self) -> TlsCrypto {
        TlsCrypto::default()
    }
}

/// The real environment: the system clock and the operating system's RNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_nanos(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }

    fn rng_seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        seed
    }
}
