//! Activation and trust: the replication CA, activation tokens, bootstrap bundles and the list
//! of active secondary certificates.
//!
//! Everything here is pure. Keys come from the caller's RNG and are handed to rcgen (X.509) and
//! jsonwebtoken (JWT). Every key and signature is Ed25519, whose signatures are deterministic,
//! so the same seed and `now` give byte-identical certificates and tokens.
//!
//! The flow on the primary: [`ReplicationCa::generate`] at `primary/enable`, then for each
//! `secondary-token` a secondary certificate ([`ReplicationCa::issue_secondary_cert`] or
//! [`ReplicationCa::certify_secondary_key`]), a [`BootstrapBundle`] stored under a wrapping
//! token, an entry in the [`SecondaryRegistry`] and a JWT from [`token::issue`]. On the
//! secondary: [`token::parse_unverified`] to find the primary, unwrap at the primary (which runs
//! [`token::verify`]), then [`BootstrapBundle::check_against`] before anything is changed.
//!
//! Secret material (the CA key, the activation signing key, the primary's cluster key) belongs in
//! `Partition::Local` through the barrier. Every type here that holds a key prints none of it in
//! `Debug` and zeroizes it on drop.

pub mod bundle;
pub mod ca;
pub mod cert;
pub mod keys;
pub mod revocation;
pub mod token;

pub use bundle::{BootstrapBundle, BundleError, Epoch, decode_bundle};
pub use ca::{CaError, IssuedCert, ReplicationCa};
pub use cert::{CertError, Purpose, SecondaryPeer, parse_secondary_peer, sha256_fingerprint};
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use revocation::{ActiveCert, SecondaryRegistry, Voided};
pub use token::{ACTIVATION_TOKEN_TYPE, Claims, ClaimsParams, TokenError};
