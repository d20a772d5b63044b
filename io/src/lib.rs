//! Coffer's server around the pure core: storage, network and command line.
