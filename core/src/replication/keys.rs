//! Key material the primary hands a secondary over the authenticated cluster channel.
//!
//! A [`KeyOffer`] carries the root key sealed to the secondary's own Ed25519 key (converted to
//! X25519), together with the primary's raw `core/keyring` and `core/seal-config` records. The
//! keyring record is itself encrypted under the root key, so the offer contains no plaintext key.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// The primary's keys, sealed to one secondary.
///
/// The secondary opens `sealed_root_key` with the private key of its bundle, and with that
/// root key decrypts `keyring`. Its `Debug` output names the type only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOffer {
    /// The primary's ephemeral X25519 public key for this offer.
    pub ephemeral_public: [u8; 32],
    /// The AES-256-GCM nonce of `sealed_root_key`.
    pub nonce: [u8; 12],
    /// The root key, encrypted with AES-256-GCM under a key derived from the X25519 secret.
    pub sealed_root_key: Vec<u8>,
    /// The primary's `core/keyring` record as stored: the keyring encrypted under the root key.
    pub keyring: Vec<u8>,
    /// The primary's `core/seal-config` record as stored.
    pub seal_config: Vec<u8>,
}

impl fmt::Debug for KeyOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyOffer")
    }
}

impl Drop for KeyOffer {
    fn drop(&mut self) {
        self.ephemeral_public.zeroize();
        self.nonce.zeroize();
        self.sealed_root_key.zeroize();
        self.keyring.zeroize();
    }
}

#[cfg(test)]
pub(crate) fn sample_offer(seed: u8) -> KeyOffer {
    KeyOffer {
        ephemeral_public: [seed; 32],
        nonce: [seed; 12],
        sealed_root_key: vec![seed; 48],
        keyring: vec![seed; 64],
        seal_config: br#"{"secret_shares":1,"secret_threshold":1}"#.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_key_bytes() {
        let offer = sample_offer(0xab);
        assert_eq!(format!("{offer:?}"), "KeyOffer");
    }
}
