//! The cluster port: mutually authenticated TLS between a primary and its secondaries
//! ([`tls`]), the accept loop that hands authenticated connections to replication
//! ([`listener`]), and the replication state machines run over those connections
//! ([`replication`]).

pub mod listener;
pub mod replication;
pub mod tls;

pub use listener::{
    AcceptorSource, AcceptorState, ClusterLimits, ReplicationHandler, serve_cluster,
};
pub use tls::{
    AcceptedConnection, ActiveCerts, CertRejection, ClusterAcceptor, ClusterAlpn, ClusterConnector,
    ClusterPeer, ClusterTlsError, FORWARDING_ALPN, PeerRole, REPLICATION_ALPN, TlsCrypto,
};
