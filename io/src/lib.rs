//! Coffer's server around the pure core: storage, network and command line.

pub mod cli;
pub mod server;
