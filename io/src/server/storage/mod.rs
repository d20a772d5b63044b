//! Storage backends of a node. `inmem` uses `coffer_core::storage::MemStorage`.

pub mod lmdb;

pub use lmdb::{DEFAULT_MAP_SIZE, LmdbStorage};
