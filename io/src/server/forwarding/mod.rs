//! Request forwarding over the cluster port (ALPN `coffer-forwarding-v1`): the secondary's
//! [`client`] and the primary's [`server`]. Messages are
//! [`coffer_core::forwarding::ForwardMessage`]s in the replication frame layout.

pub mod client;
pub mod server;

#[cfg(test)]
mod tests;

pub use client::{ClientLimits, ForwardClient};
pub use server::{ForwardExecutor, ForwardingLimits, NodeExecutor, serve_forwarding};
