//! The keyring: numbered terms of AES-256-GCM keys.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::storage::Partition;
use crate::time::Timestamp;

/// The first byte of every value the barrier writes.
const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// The reason a stored value did not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The value is shorter than the header or has an unknown format byte.
    #[error("value is not barrier ciphertext")]
    Malformed,
    /// The value names a key term this keyring does not have.
    #[error("value was encrypted with key term {0}, which this keyring does not have")]
    UnknownTerm(u32),
    /// Authentication failed: wrong key, tampered bytes, or moved to another key.
    #[error("value failed authentication")]
    Authentication,
}

/// One term's key and when it was installed.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyTerm {
    /// The 256-bit key.
    #[serde(with = "key_base64")]
    pub key: Zeroizing<[u8; 32]>,
    /// When this term was installed.
    pub installed: Timestamp,
}

/// The set of barrier keys: every old term decrypts, the newest term encrypts.
#[derive(Serialize, Deserialize)]
pub struct Keyring {
    terms: BTreeMap<u32, KeyTerm>,
    #[serde(skip)]
    encryptions: AtomicU64,
}

impl Keyring {
    /// A keyring with one fresh key as term 1.
    pub fn generate(rng: &mut dyn CryptoRngCore, now: Timestamp) -> Keyring {
        let mut terms = BTreeMap::new();
        terms.insert(1, KeyTerm::generate(rng, now));
        Keyring {
            terms,
            encryptions: AtomicU64::new(0),
        }
    }

    /// A copy of this keyring with one more term, which becomes the active one.
    pub fn rotated(&self, rng: &mut dyn CryptoRngCore, now: Timestamp) -> Keyring {
        let mut terms = self.terms.clone();
        let next = self.active_term().saturating_add(1);
        terms.insert(next, KeyTerm::generate(rng, now));
        Keyring {
            terms,
            encryptions: AtomicU64::new(0),
        }
    }

    /// The term new values are encrypted with.
    pub fn active_term(&self) -> u32 {
        self.terms.keys().next_back().copied().unwrap_or(0)
    }

    /// When the active term was installed.
    pub fn active_installed(&self) -> Timestamp {
        self.terms
            .values()
            .next_back()
            .map(|term| term.installed)
            .unwrap_or_default()
    }

    /// How many values this keyring has encrypted since it was loaded.
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }

    /// Encrypts `plaintext` for `key` in `partition`.
    ///
    /// The layout is `version (1) || term (4, big-endian) || nonce (12) || ciphertext || tag`.
    /// The associated data is the partition name, a zero byte and the key, so a value only
    /// decrypts at the place it was written.
    pub fn encrypt(
        &self,
        partition: Partition,
        key: &str,
        plaintext: &[u8],
        rng: &mut dyn CryptoRngCore,
    ) -> Vec<u8> {
        let term = self.active_term();
        let Some(entry) = self.terms.get(&term) else {
            // A keyring is never built empty, so this is unreachable in practice; refusing to
            // store plaintext is the safe answer if it ever happens.
            return Vec::new();
        };
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new_from_slice(entry.key.as_ref())
            .expect("a 32-byte key is always a valid AES-256 key");
        let aad = associated_data(partition, key);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&term.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        out
    }

    /// Decrypts a value written by [`Keyring::encrypt`] for the same partition and key.
    pub fn decrypt(
        &self,
        partition: Partition,
        key: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        if ciphertext.len() < HEADER_LEN || ciphertext[0] != FORMAT_VERSION {
            return Err(KeyringError::Malformed);
        }
        let term = u32::from_be_bytes([ciphertext[1], ciphertext[2], ciphertext[3], ciphertext[4]]);
        let entry = self
            .terms
            .get(&term)
            .ok_or(KeyringError::UnknownTerm(term))?;
        let cipher = Aes256Gcm::new_from_slice(entry.key.as_ref())
            .expect("a 32-byte key is always a valid AES-256 key");
        let aad = associated_data(partition, key);
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(&ciphertext[5..HEADER_LEN]),
                Payload {
                    msg: &ciphertext[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| KeyringError::Authentication)?;
        Ok(Zeroizing::new(plaintext))
    }

    /// Derives a 256-bit key for `label` with HKDF-SHA256 from the oldest term, which every
    /// copy of this keyring (a replication secondary's too) holds and a rotation keeps.
    pub fn derive_key(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut derived = Zeroizing::new([0u8; 32]);
        if let Some(term) = self.terms.values().next() {
            let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, term.key.as_ref());
            hkdf.expand(label, derived.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 output length");
        }
        derived
    }

    /// The terms and their install times, without key material.
    pub fn terms(&self) -> impl Iterator<Item = (u32, Timestamp)> + '_ {
        self.terms
            .iter()
            .map(|(term, entry)| (*term, entry.installed))
    }
}

impl KeyTerm {
    fn generate(rng: &mut dyn CryptoRngCore, now: Timestamp) -> KeyTerm {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        KeyTerm {
            key,
            installed: now,
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active_term", &self.active_term())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KeyTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyTerm")
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

fn associated_data(partition: Partition, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(partition.name().len() + 1 + key.len());
    aad.extend_from_slice(partition.name().as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

mod key_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub(super) fn serialize<S: Serializer>(
        key: &Zeroizing<[u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(key.as_ref()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Zeroizing<[u8; 32]>, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.as_bytes())
                .map_err(serde::de::Error::custom)?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(serde::de::Error::custom("a barrier key must be 32 bytes"));
        }
        key.copy_from_slice(&bytes);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn keyring() -> (Keyring, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        (Keyring::generate(&mut rng, Timestamp::EPOCH), rng)
    }

    #[test]
    fn value_round_trips() {
        let (keyring, mut rng) = keyring();
        let sealed = keyring.encrypt(Partition::Shared, "a/b", b"secret", &mut rng);
        let opened = keyring.decrypt(Partition::Shared, "a/b", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"secret");
    }

    #[test]
    fn ciphertext_hides_plaintext() {
        let (keyring, mut rng) = keyring();
        let sealed = keyring.encrypt(Partition::Shared, "a", b"hunter2hunter2", &mut rng);
        assert!(!sealed.windows(7).any(|window| window == b"hunter2"));
    }

    #[test]
    fn value_moved_to_other_key_fails() {
        let (keyring, mut rng) = keyring();
        let sealed = keyring.encrypt(Partition::Shared, "a", b"secret", &mut rng);
        assert_eq!(
            keyring
                .decrypt(Partition::Shared, "b", &sealed)
                .unwrap_err(),
            KeyringError::Authentication
        );
        assert_eq!(
            keyring.decrypt(Partition::Local, "a", &sealed).unwrap_err(),
            KeyringError::Authentication
        );
    }

    #[test]
    fn rotation_keeps_old_terms_readable() {
        let (keyring, mut rng) = keyring();
        let old = keyring.encrypt(Partition::Shared, "a", b"one", &mut rng);
        let rotated = keyring.rotated(&mut rng, Timestamp::from_secs(5));
        assert_eq!(rotated.active_term(), 2);
        let new = rotated.encrypt(Partition::Shared, "a", b"two", &mut rng);
        assert_eq!(new[1..5], 2u32.to_be_bytes());
        assert_eq!(
            rotated
                .decrypt(Partition::Shared, "a", &old)
                .unwrap()
                .as_slice(),
            b"one"
        );
    }

    #[test]
    fn truncated_value_is_malformed() {
        let (keyring, _) = keyring();
        assert_eq!(
            keyring
                .decrypt(Partition::Shared, "a", &[1, 0, 0])
                .unwrap_err(),
            KeyringError::Malformed
        );
    }

    #[test]
    fn debug_hides_key_material() {
        let (keyring, _) = keyring();
        let text = format!("{keyring:?}");
        assert!(!text.contains("key:"));
    }
}
