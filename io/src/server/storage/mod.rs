//! Storage backends of a node. `inmem` uses `coffer_core::storage::MemStorage`.

pub mod lmdb;
pub mod snapshot;

pub use lmdb::{DEFAULT_MAP_SIZE, LmdbSnapshot, LmdbStorage};
pub use snapshot::PinSnapshot;
