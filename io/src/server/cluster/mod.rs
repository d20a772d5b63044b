//! The cluster port: replication between a primary and its secondaries.

pub mod replication;
