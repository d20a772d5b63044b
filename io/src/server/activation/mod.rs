//! Secondary activation on this node: the steps of `secondary/enable` that need the network.

pub mod unwrap;
