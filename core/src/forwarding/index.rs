//! The `X-Vault-Index` header: a signed statement of the state a response reflects.
//!
//! The header is unpadded URL-safe base64 of
//! `version (1) || set id length (1) || set id || local index (8, big-endian) ||
//! replicated index (8, big-endian) || HMAC-SHA256 (32)`, where the HMAC covers every byte
//! before it. The key is derived from the barrier keyring, which every cluster of a
//! replication set shares, so any cluster of the set can check an index that another one
//! issued, and a cluster outside the set cannot.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::barrier::Keyring;

/// The header name, as clients send it.
pub const HEADER: &str = "X-Vault-Index";

/// The layout version this code writes and reads.
pub const VERSION: u8 = 1;

/// Maximum length of the header value accepted, checked before decoding.
pub const MAX_HEADER_LEN: usize = 512;

const MAC_LEN: usize = 32;

/// The state one `X-Vault-Index` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexState {
    /// The replication set the index belongs to, see [`IndexKey::set_id`].
    pub set_id: String,
    /// The index of the issuing node's own local writes. Coffer keeps no log of local writes,
    /// so it writes 0 here and waits only for `replicated_index`.
    pub local_index: u64,
    /// The WAL index of replicated state the response reflects.
    pub replicated_index: u64,
}

/// The reason an `X-Vault-Index` header was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The header does not decode into the expected layout.
    #[error("invalid X-Vault-Index header: {0}; send a value that this replication set returned")]
    Malformed(String),
    /// The signature does not match.
    #[error("invalid X-Vault-Index header: the signature does not match; the value was changed")]
    Signature,
    /// The index was issued by another replication set.
    #[error(
        "invalid X-Vault-Index header: it belongs to replication set {found}, not {expected}; \
         send a value that this replication set returned"
    )]
    OtherSet {
        /// The set id in the header.
        found: String,
        /// This node's set id.
        expected: String,
    },
}

/// The signing key of a replication set. `Debug` hides the key.
pub struct IndexKey {
    key: Zeroizing<[u8; 32]>,
    set_id: String,
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexKey")
            .field("set_id", &self.set_id)
            .finish_non_exhaustive()
    }
}

impl IndexKey {
    /// Derives the key and set id from the keyring's oldest term, which a keyring rotation
    /// keeps, so indexes stay valid across rotations.
    pub fn from_keyring(keyring: &Keyring) -> IndexKey {
        let key = keyring.derive_key(b"coffer x-vault-index hmac");
        let set = keyring.derive_key(b"coffer x-vault-index set id");
        IndexKey {
            key,
            set_id: hex::encode(&set[..8]),
        }
    }

    /// Makes a key from raw bytes, for tests and fuzzing.
    pub fn from_bytes(key: [u8; 32], set_id: impl Into<String>) -> IndexKey {
        IndexKey {
            key: Zeroizing::new(key),
            set_id: set_id.into(),
        }
    }

    /// The replication set's id, the same on every cluster of the set.
    pub fn set_id(&self) -> &str {
        &self.set_id
    }

    /// Encodes and signs the header value for the given indexes.
    pub fn encode(&self, local_index: u64, replicated_index: u64) -> String {
        let mut bytes = body(&self.set_id, local_index, replicated_index);
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks the header's signature and set, and returns the state it names.
    pub fn verify(&self, header: &str) -> Result<IndexState, IndexError> {
        let (state, signed, mac) = decode_parts(header)?;
        let expected = self.mac(&signed);
        if !bool::from(expected.ct_eq(&mac)) {
            if state.set_id != self.set_id {
                return Err(IndexError::OtherSet {
                    found: state.set_id,
                    expected: self.set_id.clone(),
                });
            }
            return Err(IndexError::Signature);
        }
        Ok(state)
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .expect("HMAC accepts a key of any length");
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }
}

/// Parses an `X-Vault-Index` header without checking its signature. Never panics, whatever the
/// input; [`IndexKey::verify`] is the check a server applies.
pub fn parse_index(header: &str) -> Result<IndexState, IndexError> {
    decode_parts(header).map(|(state, _, _)| state)
}

fn decode_parts(header: &str) -> Result<(IndexState, Vec<u8>, [u8; MAC_LEN]), IndexError> {
    let malformed = |reason: &str| IndexError::Malformed(reason.to_owned());
    if header.len() > MAX_HEADER_LEN {
        return Err(IndexError::Malformed(format!(
            "{} bytes exceeds the maximum of {MAX_HEADER_LEN}",
            header.len()
        )));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header.trim())
        .map_err(|error| IndexError::Malformed(format!("not base64: {error}")))?;
    let (&version, rest) = bytes.split_first().ok_or_else(|| malformed("empty"))?;
    if version != VERSION {
        return Err(IndexError::Malformed(format!(
            "version {version} is not the supported version {VERSION}"
        )));
    }
    let (&set_len, rest) = rest.split_first().ok_or_else(|| malformed("truncated"))?;
    let set_len = usize::from(set_len);
    if rest.len() != set_len + 16 + MAC_LEN {
        return Err(malformed("wrong length"));
    }
    let (set_id, rest) = rest.split_at(set_len);
    let set_id = std::str::from_utf8(set_id)
        .map_err(|_| malformed("the set id is not UTF-8"))?
        .to_owned();
    let (local, rest) = rest.split_at(8);
    let (replicated, mac) = rest.split_at(8);
    let state = IndexState {
        set_id,
        local_index: u64::from_be_bytes(local.try_into().expect("split at 8 bytes")),
        replicated_index: u64::from_be_bytes(replicated.try_into().expect("split at 8 bytes")),
    };
    let signed = bytes[..bytes.len() - MAC_LEN].to_vec();
    let mac: [u8; MAC_LEN] = mac.try_into().expect("the length check leaves 32 bytes");
    Ok((state, signed, mac))
}

fn body(set_id: &str, local_index: u64, replicated_index: u64) -> Vec<u8> {
    let set_id = &set_id.as_bytes()[..set_id.len().min(usize::from(u8::MAX))];
    let mut bytes = Vec::with_capacity(2 + set_id.len() + 16 + MAC_LEN);
    bytes.push(VERSION);
    bytes.push(u8::try_from(set_id.len()).expect("the set id is cut to 255 bytes"));
    bytes.extend_from_slice(set_id);
    bytes.extend_from_slice(&local_index.to_be_bytes());
    bytes.extend_from_slice(&replicated_index.to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8, set: &str) -> IndexKey {
        IndexKey::from_bytes([byte; 32], set)
    }

    #[test]
    fn index_round_trips() {
        let key = key(1, "set-a");
        let header = key.encode(3, 42);
        let state = key.verify(&header).unwrap();
        assert_eq!(state.set_id, "set-a");
        assert_eq!(state.local_index, 3);
        assert_eq!(state.replicated_index, 42);
        assert_eq!(parse_index(&header).unwrap(), state);
    }

    #[test]
    fn tampered_index_fails_signature() {
        let key = key(1, "set-a");
        let header = key.encode(3, 42);
        let mut bytes = URL_SAFE_NO_PAD.decode(&header).unwrap();
        let replicated_last = 2 + 5 + 15;
        bytes[replicated_last] ^= 0x01;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(parse_index(&tampered).unwrap().replicated_index, 43);
        assert_eq!(key.verify(&tampered), Err(IndexError::Signature));
    }

    #[test]
    fn index_of_other_set_is_named() {
        let ours = key(1, "set-a");
        let theirs = key(2, "set-b");
        let error = ours.verify(&theirs.encode(0, 7)).unwrap_err();
        assert!(matches!(error, IndexError::OtherSet { .. }), "{error:?}");
        assert!(error.to_string().contains("X-Vault-Index"), "{error}");
        assert!(error.to_string().contains("set-b"), "{error}");
    }

    #[test]
    fn same_set_with_other_key_fails_signature() {
        let ours = key(1, "set-a");
        let forged = key(2, "set-a");
        assert_eq!(
            ours.verify(&forged.encode(0, 7)),
            Err(IndexError::Signature)
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let valid = key(1, "s").encode(1, 1);
        let cases = [
            String::new(),
            "!!!".to_owned(),
            URL_SAFE_NO_PAD.encode([2u8]),
            URL_SAFE_NO_PAD.encode([1u8]),
            URL_SAFE_NO_PAD.encode([1u8, 200, 0]),
            valid[..valid.len() - 4].to_owned(),
            "A".repeat(MAX_HEADER_LEN + 1),
        ];
        for case in cases {
            let error = parse_index(&case).unwrap_err();
            assert!(
                matches!(error, IndexError::Malformed(_)),
                "{case:?}: {error:?}"
            );
        }
    }

    #[test]
    fn keyring_key_is_shared_by_copies() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;

        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let now = crate::Timestamp::from_secs(1);
        let keyring = Keyring::generate(&mut rng, now);
        let rotated = keyring.rotated(&mut rng, now);
        let other = Keyring::generate(&mut rng, now);
        let header = IndexKey::from_keyring(&keyring).encode(0, 9);
        assert_eq!(
            IndexKey::from_keyring(&rotated)
                .verify(&header)
                .unwrap()
                .replicated_index,
            9
        );
        assert!(IndexKey::from_keyring(&other).verify(&header).is_err());
    }
}
