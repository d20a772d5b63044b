//! Coffer's core: every rule of the secrets server and of replication, as pure code.
//!
//! # The contract
//!
//! Nothing in this crate opens a socket or a file, reads a clock or draws ambient randomness.
//! Time enters as a [`Timestamp`] argument and randomness as a caller-supplied RNG, so the same
//! inputs always give the same outputs. That is what lets the simulation and the fuzzers replay
//! any run from its seed. The `io` crate supplies real clocks, the operating system's RNG, LMDB
//! and the network; the `sim` crate supplies simulated ones.
//!
//! # Request handling
//!
//! [`Core::handle_request`] runs one logical request against a [`storage::Transaction`]. A
//! handler that tries to write a partition the transaction holds read-only gets
//! [`storage::StorageError::ReadOnly`], and the outcome becomes [`Outcome::ReadOnly`]: the caller
//! discards the transaction and either reruns the request on its writer (a local write) or
//! forwards it to the primary (a shared write on a secondary). That single rule decides what is
//! forwarded.
//!
//! # State machines
//!
//! The replication state machines follow the sans-IO shape: inputs are `handle_*` methods that
//! take `now`, outputs are `poll_*` methods. **After any input, drain every output until each
//! poller returns `None`.** Outputs are plain data; no state machine holds a lock, a channel or a
//! task.
#![deny(missing_docs)]

pub mod acl;
pub mod audit;
mod auth;
pub mod barrier;
pub mod engines;
pub mod error;
pub mod forwarding;
mod handler;
pub mod hcl_shape;
pub mod ids;
pub mod lease;
pub mod mounts;
pub mod replication;
pub mod request;
pub mod storage;
pub mod sys;
pub mod time;
pub mod token;
mod wrapping;

pub use error::Error;
pub use handler::{Core, CoreConfig, Ctx, Outcome};
pub use time::Timestamp;
