//! Activation and trust: the replication CA, activation tokens, bootstrap bundles and the list
//! of active secondary certificates.
//!
//! Everything here is pure. Keys come from the caller's RNG and are handed to rcgen (X.509) and
//! jsonwebtoken (JWT). Every key and signature is Ed25519, whose signatures are deterministic,
//! so the same seed and `now` give byte-identical certificates and tokens.
//!
//! [`issue_secondary_token`] and [`check_unwrapped_bundle`] run the two ends in one call each.
//! Step by step, the primary calls [`ReplicationCa::generate`] at `primary/enable`. For each
//! `secondary-token` it issues a secondary certificate ([`ReplicationCa::issue_secondary_cert`]
//! or [`ReplicationCa::certify_secondary_key`]), stores a [`BootstrapBundle`] under a wrapping
//! token, records the serial in the [`SecondaryRegistry`] and signs a JWT with [`token::issue`].
//! The secondary reads the token with [`token::parse_unverified`] to find the primary, unwraps
//! at the primary (which runs [`token::verify`]), then calls
//! [`BootstrapBundle::check_against`] before anything is changed.
//!
//! Secret material (the CA key, the activation signing key, the primary's cluster key) belongs in
//! `Partition::Local` through the barrier. Every type here that holds a key prints none of it in
//! `Debug` and zeroizes it on drop.

pub mod bundle;
pub mod ca;
pub mod cert;
pub mod issue;
pub mod keys;
pub mod revocation;
pub mod token;

pub use bundle::{BootstrapBundle, BundleError, Epoch, decode_bundle};
pub use ca::{CaError, IssuedCert, ReplicationCa};
pub use cert::{CertError, Purpose, SecondaryPeer, parse_secondary_peer, sha256_fingerprint};
pub use issue::{
    ActivationError, IssuedActivation, SecondaryTokenRequest, check_unwrapped_bundle,
    issue_secondary_token,
};
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use revocation::{ActiveCert, SecondaryRegistry, Voided};
pub use token::{ACTIVATION_TOKEN_TYPE, Claims, ClaimsParams, TokenError};
