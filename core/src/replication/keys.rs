//! Key material the primary hands a secondary over the authenticated cluster channel.
//!
//! A [`KeyOffer`] carries the root key sealed to the secondary's own Ed25519 key (converted to
//! X25519), together with the primary's raw `core/keyring` and `core/seal-config` records. The
//! keyring record is itself encrypted under the root key, so the offer contains no plaintext key.
//!
//! Sealing: an ephemeral X25519 key from the caller's RNG, Diffie-Hellman with the Montgomery
//! form of the secondary's public key, HKDF-SHA256 over the shared secret, then AES-256-GCM
//! with the cluster id, the secondary id and the seal-config record as associated data. An
//! offer therefore opens only with that secondary's private key, for that cluster and id.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::VerifyingKey;
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::Core;
use crate::barrier::seal::{self, KEYRING_KEY, SEAL_CONFIG_KEY};
use crate::barrier::{Keyring, RootKey, SealConfig};
use crate::error::Error;
use crate::replication::activation::PrivateKey;
use crate::storage::{Partition, Transaction};

/// HKDF `info` of the key that seals a root key, naming the scheme and its version.
const HKDF_INFO: &[u8] = b"coffer replication key offer v1";

/// Length of a sealed root key: the key and the GCM tag.
const SEALED_ROOT_KEY_LEN: usize = 32 + 16;

/// The reason a key offer could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyOfferError {
    /// The secondary's public key is not an Ed25519 point.
    #[error("invalid secondary public key: the 32 bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The secondary's public key has small order, so the shared secret would be known.
    #[error("invalid secondary public key: the key has small order and cannot receive keys")]
    WeakPublicKey,
    /// The primary sent a key that has small order.
    #[error("invalid key offer: the ephemeral key has small order")]
    WeakEphemeralKey,
    /// GCM authentication failed.
    #[error(
        "the key offer does not open with this secondary's key: it was sealed to another key, \
         for another cluster or secondary id, or altered in transit"
    )]
    Unopenable,
    /// The sealed root key has the wrong length.
    #[error("invalid key offer: the sealed root key is {length} bytes, expected {expected}")]
    SealedLength {
        /// Length received.
        length: usize,
        /// Length expected.
        expected: usize,
    },
    /// The root key did not decrypt the keyring record of the offer.
    #[error("invalid key offer: the root key does not open the offered keyring: {0}")]
    Keyring(String),
    /// The seal-config record is not valid JSON of the Shamir settings.
    #[error("invalid key offer: the seal-config record is malformed: {0}")]
    SealConfig(String),
}

impl From<KeyOfferError> for Error {
    fn from(error: KeyOfferError) -> Error {
        Error::bad_request(error.to_string())
    }
}

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

/// An opened offer: the primary's root key, its keyring, and the records to store.
pub struct OpenedKeys {
    /// The primary's root key.
    pub root_key: RootKey,
    /// The keyring the root key decrypted.
    pub keyring: Keyring,
    /// The primary's Shamir settings.
    pub seal_config: SealConfig,
    /// The `core/keyring` record, to store unchanged.
    pub keyring_record: Vec<u8>,
    /// The `core/seal-config` record, to store unchanged.
    pub seal_config_record: Vec<u8>,
}

impl fmt::Debug for OpenedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenedKeys")
    }
}

/// Builds the offer of this primary's keys to `secondary_id`, whose certificate carries
/// `secondary_public_key` (the 32 raw bytes of an Ed25519 key).
///
/// Reads the root key from the unsealed barrier and the raw barrier records from `txn`, and
/// fails with 503 while sealed and 400 when this node is not a replication primary.
pub fn key_offer(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
    secondary_id: &str,
    secondary_public_key: &[u8; 32],
) -> Result<KeyOffer, Error> {
    let cluster_id = crate::replication::role::primary_cluster_id(core, txn, rng)?;
    let keyring = txn
        .get(Partition::Shared, KEYRING_KEY)?
        .ok_or_else(|| Error::internal("the barrier has no stored keyring"))?;
    let seal_config = txn
        .get(Partition::Shared, SEAL_CONFIG_KEY)?
        .ok_or_else(|| Error::internal("the barrier has no stored seal configuration"))?;
    let state = core.barrier.seal_state();
    let root_key = state.root_key.as_ref().ok_or_else(Error::sealed)?;
    let mut offer = seal_root_key(
        root_key,
        secondary_public_key,
        &cluster_id,
        secondary_id,
        &seal_config,
        rng,
    )?;
    offer.keyring = keyring;
    offer.seal_config = seal_config;
    Ok(offer)
}

/// Opens `offer` with the secondary's private key and checks that its root key decrypts its
/// keyring record.
pub fn open_key_offer(
    offer: &KeyOffer,
    key: &PrivateKey,
    cluster_id: &str,
    secondary_id: &str,
) -> Result<OpenedKeys, KeyOfferError> {
    let root_key = open_root_key(offer, key, cluster_id, secondary_id)?;
    let keyring = seal::open_keyring_record(&offer.keyring, &root_key)
        .map_err(|error| KeyOfferError::Keyring(error.to_string()))?;
    let seal_config: SealConfig = serde_json::from_slice(&offer.seal_config)
        .map_err(|error| KeyOfferError::SealConfig(error.to_string()))?;
    Ok(OpenedKeys {
        root_key,
        keyring,
        seal_config,
        keyring_record: offer.keyring.clone(),
        seal_config_record: offer.seal_config.clone(),
    })
}

/// Seals `root_key` to the Ed25519 key `recipient`. The returned offer has empty records.
pub fn seal_root_key(
    root_key: &RootKey,
    recipient: &[u8; 32],
    cluster_id: &str,
    secondary_id: &str,
    seal_config: &[u8],
    rng: &mut dyn CryptoRngCore,
) -> Result<KeyOffer, KeyOfferError> {
    let recipient = VerifyingKey::from_bytes(recipient)
        .map_err(|_| KeyOfferError::InvalidPublicKey)?
        .to_montgomery();
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(ephemeral.as_mut());
    let ephemeral_public = MontgomeryPoint::mul_base_clamped(*ephemeral);
    let shared = Zeroizing::new(recipient.mul_clamped(*ephemeral).to_bytes());
    if is_zero(&shared) {
        return Err(KeyOfferError::WeakPublicKey);
    }
    let cipher = offer_cipher(&shared, &ephemeral_public, &recipient);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let aad = associated_data(cluster_id, secondary_id, seal_config);
    let sealed_root_key = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: root_key.as_ref(),
                aad: &aad,
            },
        )
        .map_err(|_| KeyOfferError::Unopenable)?;
    Ok(KeyOffer {
        ephemeral_public: ephemeral_public.to_bytes(),
        nonce,
        sealed_root_key,
        keyring: Vec::new(),
        seal_config: Vec::new(),
    })
}

/// Opens the root key of `offer` with the secondary's private key.
pub fn open_root_key(
    offer: &KeyOffer,
    key: &PrivateKey,
    cluster_id: &str,
    secondary_id: &str,
) -> Result<RootKey, KeyOfferError> {
    if offer.sealed_root_key.len() != SEALED_ROOT_KEY_LEN {
        return Err(KeyOfferError::SealedLength {
            length: offer.sealed_root_key.len(),
            expected: SEALED_ROOT_KEY_LEN,
        });
    }
    let scalar = key.scalar_bytes();
    let own_public = MontgomeryPoint::mul_base_clamped(*scalar);
    let ephemeral_public = MontgomeryPoint(offer.ephemeral_public);
    let shared = Zeroizing::new(ephemeral_public.mul_clamped(*scalar).to_bytes());
    if is_zero(&shared) {
        return Err(KeyOfferError::WeakEphemeralKey);
    }
    let cipher = offer_cipher(&shared, &ephemeral_public, &own_public);
    let aad = associated_data(cluster_id, secondary_id, &offer.seal_config);
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&offer.nonce),
                Payload {
                    msg: &offer.sealed_root_key,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyOfferError::Unopenable)?,
    );
    let mut root_key = RootKey::default();
    if plaintext.len() != root_key.len() {
        return Err(KeyOfferError::Unopenable);
    }
    root_key.copy_from_slice(&plaintext);
    Ok(root_key)
}

/// Returns the AES-256-GCM cipher keyed by HKDF-SHA256 of the shared secret, salted with both public
/// keys so the key is bound to this exchange.
fn offer_cipher(
    shared: &[u8; 32],
    ephemeral_public: &MontgomeryPoint,
    recipient: &MontgomeryPoint,
) -> Aes256Gcm {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public.as_bytes());
    salt[32..].copy_from_slice(recipient.as_bytes());
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf.expand(HKDF_INFO, key.as_mut())
        .expect("32 bytes is within HKDF-SHA256's output limit");
    Aes256Gcm::new_from_slice(key.as_ref()).expect("a 32-byte key is always a valid AES-256 key")
}

/// Joins the parts, each after its length, so no two different triples give the same bytes.
fn associated_data(cluster_id: &str, secondary_id: &str, seal_config: &[u8]) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in [cluster_id.as_bytes(), secondary_id.as_bytes(), seal_config] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

fn is_zero(bytes: &[u8; 32]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(
        bytes.as_slice(),
        [0u8; 32].as_slice(),
    ))
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
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    const CONFIG: &[u8] = br#"{"secret_shares":1,"secret_threshold":1}"#;

    fn root_key() -> RootKey {
        RootKey::new([0x5a; 32])
    }

    fn sealed_to(key: &PrivateKey, rng: &mut ChaCha20Rng) -> KeyOffer {
        let public = key.public_key();
        let mut offer =
            seal_root_key(&root_key(), public.as_bytes(), "c1", "s1", CONFIG, rng).unwrap();
        offer.seal_config = CONFIG.to_vec();
        offer
    }

    #[test]
    fn offer_opens_with_the_secondary_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = PrivateKey::generate(&mut rng);
        let offer = sealed_to(&key, &mut rng);
        let opened = open_root_key(&offer, &key, "c1", "s1").unwrap();
        assert_eq!(*opened, *root_key());
    }

    #[test]
    fn offer_fails_with_another_secondary_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = PrivateKey::generate(&mut rng);
        let other = PrivateKey::generate(&mut rng);
        let offer = sealed_to(&key, &mut rng);
        let error = open_root_key(&offer, &other, "c1", "s1").unwrap_err();
        assert_eq!(error, KeyOfferError::Unopenable);
    }

    #[test]
    fn offer_fails_for_another_cluster_or_id() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let key = PrivateKey::generate(&mut rng);
        let offer = sealed_to(&key, &mut rng);
        let wrong_cluster = open_root_key(&offer, &key, "c2", "s1").unwrap_err();
        assert_eq!(wrong_cluster, KeyOfferError::Unopenable);
        let wrong_id = open_root_key(&offer, &key, "c1", "s2").unwrap_err();
        assert_eq!(wrong_id, KeyOfferError::Unopenable);
    }

    #[test]
    fn tampered_offer_fails_to_open() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = PrivateKey::generate(&mut rng);
        let offer = sealed_to(&key, &mut rng);
        let mut cases = Vec::new();
        for index in 0..SEALED_ROOT_KEY_LEN {
            let mut tampered = offer.clone();
            tampered.sealed_root_key[index] ^= 1;
            cases.push(tampered);
        }
        let mut nonce = offer.clone();
        nonce.nonce[0] ^= 1;
        cases.push(nonce);
        let mut ephemeral = offer.clone();
        ephemeral.ephemeral_public[5] ^= 1;
        cases.push(ephemeral);
        let mut config = offer.clone();
        config.seal_config = br#"{"secret_shares":5,"secret_threshold":1}"#.to_vec();
        cases.push(config);
        for tampered in cases {
            let result = open_root_key(&tampered, &key, "c1", "s1");
            assert!(result.is_err(), "a tampered offer opened");
        }
    }

    #[test]
    fn truncated_offer_is_rejected_with_lengths() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let key = PrivateKey::generate(&mut rng);
        let mut offer = sealed_to(&key, &mut rng);
        offer.sealed_root_key.truncate(10);
        let error = open_root_key(&offer, &key, "c1", "s1").unwrap_err();
        assert_eq!(
            error,
            KeyOfferError::SealedLength {
                length: 10,
                expected: 48
            }
        );
    }

    #[test]
    fn small_order_public_key_is_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        // The Ed25519 identity point, compressed: y = 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let result = seal_root_key(&root_key(), &identity, "c1", "s1", CONFIG, &mut rng);
        assert_eq!(result.unwrap_err(), KeyOfferError::WeakPublicKey);
    }

    #[test]
    fn debug_output_shows_no_key_bytes() {
        let offer = sample_offer(0xab);
        assert_eq!(format!("{offer:?}"), "KeyOffer");
    }
}
