//! Replication: the WAL, the Merkle index, the wire protocol and the state machines of the
//! primary's sessions and of a secondary.
pub mod activation;
