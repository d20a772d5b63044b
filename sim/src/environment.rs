//! The simulated clock and the seeded randomness a simulated node runs on.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coffer_core::Timestamp;
use coffer_io::server::Environment;
use coffer_io::server::cluster::TlsCrypto;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

use crate::key_exchange::SEEDED_X25519;

/// The wall-clock reading at the start of every simulation: 2026-01-01T00:00:00Z.
pub const SIM_EPOCH: Timestamp = Timestamp::from_secs(1_767_225_600);

/// Returns the simulated wall-clock time: [`SIM_EPOCH`] plus the simulation's elapsed time.
/// Outside a running simulation it returns [`SIM_EPOCH`].
pub fn sim_now() -> Timestamp {
    SIM_EPOCH.saturating_add(turmoil::sim_elapsed().unwrap_or(Duration::ZERO))
}

thread_local! {
    /// The random source of rustls on this thread. A simulation runs on one thread, so
    /// reseeding it at the start of a run makes every handshake's random bytes repeat.
    static TLS_RANDOM: RefCell<ChaCha20Rng> = RefCell::new(ChaCha20Rng::seed_from_u64(0));
}

/// Reseeds the random source that rustls draws from on this thread.
pub fn seed_tls_random(seed: u64) {
    TLS_RANDOM.with(|rng| *rng.borrow_mut() = ChaCha20Rng::seed_from_u64(seed ^ 0x746c_7372));
}

/// Runs `draw` on the thread's seeded stream that rustls draws from.
pub(crate) fn with_tls_random<R>(draw: impl FnOnce(&mut ChaCha20Rng) -> R) -> R {
    TLS_RANDOM.with(|rng| draw(&mut rng.borrow_mut()))
}

/// rustls's random source, drawn from the thread's seeded ChaCha20 stream.
#[derive(Debug)]
struct SeededRandom;

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        with_tls_random(|rng| rng.fill_bytes(buf));
        Ok(())
    }
}

static SEEDED_RANDOM: SeededRandom = SeededRandom;

/// The simulated clock, as rustls reads it to check certificate validity.
#[derive(Debug)]
struct SimTime;

impl TimeProvider for SimTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_nanos(
            sim_now().as_nanos(),
        )))
    }
}

/// Returns ring's provider with its random source replaced by the seeded one and X25519 with
/// seeded ephemeral keys as its only key-exchange group, so that every byte of a handshake
/// repeats with the seed.
pub fn seeded_provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        secure_random: &SEEDED_RANDOM,
        kx_groups: vec![SEEDED_X25519],
        ..rustls::crypto::ring::default_provider()
    })
}

/// Returns the seeded provider and the simulated clock, the TLS crypto of every simulated
/// node and client.
pub fn seeded_crypto() -> TlsCrypto {
    TlsCrypto {
        provider: seeded_provider(),
        time: Arc::new(SimTime),
    }
}

/// One simulated node's environment: simulated time, and RNG seeds from a ChaCha20 stream
/// seeded by the run's seed, the host and the host's incarnation.
#[derive(Debug)]
pub struct SimEnvironment {
    rng: Mutex<ChaCha20Rng>,
}

impl SimEnvironment {
    /// Makes the environment of `host`'s `incarnation`-th start in the run with `seed`.
    pub fn new(seed: u64, host: &str, incarnation: u64) -> SimEnvironment {
        let mut material = [0u8; 32];
        material[..8].copy_from_slice(&seed.to_le_bytes());
        material[8..16].copy_from_slice(&incarnation.to_le_bytes());
        for (slot, byte) in material[16..].iter_mut().zip(host.bytes()) {
            *slot = byte;
        }
        SimEnvironment {
            rng: Mutex::new(ChaCha20Rng::from_seed(material)),
        }
    }
}

impl Environment for SimEnvironment {
    fn now(&self) -> Timestamp {
        sim_now()
    }

    fn rng_seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(&mut seed);
        seed
    }

    fn tls_crypto(&self) -> TlsCrypto {
        seeded_crypto()
    }
}
