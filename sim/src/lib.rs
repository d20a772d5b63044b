//! Deterministic simulations of whole Coffer replica sets on turmoil.
//!
//! Every host runs the real `coffer-io` server (the HTTPS API, the cluster port with rustls
//! handshakes, the replication supervisor) over [`coffer_core::storage::MemStorage`], with
//! simulated time and RNG seeds drawn from the run's seed. A scenario drives the set through
//! the Vault API from a client host, injects faults, and checks the invariants. The same seed
//! gives the same event trace ([`trace::Trace`]).

pub mod attack;
pub mod client;
pub mod environment;
pub mod failover;
pub mod faults;
pub mod harness;
pub mod invariants;
pub mod key_exchange;
pub mod network;
pub mod oracle;
pub mod pki;
pub mod random;
pub mod set;
pub mod snapshot;
pub mod trace;

pub use client::{ApiClient, ApiResponse};
pub use harness::{Control, Harness, PRIMARY, SimConfig, secondary_host, seed_or};
