//! The barrier records that stay readable while sealed, and the in-memory seal state.
//!
//! Three records are stored raw in the shared partition, so they replicate and can be read
//! before any key is known:
//!
//! - `core/seal-config`: the Shamir settings, as JSON.
//! - `core/keyring`: the keyring JSON, encrypted with AES-256-GCM under the root key. A wrong
//!   root key fails GCM authentication, so no separate key check is stored.
//! - `core/cluster-info`: the cluster name and id, as JSON.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::CryptoRngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::generate_root::GenerateRoot;
use super::keyring::Keyring;
use super::rekey::Rekey;
use super::shamir::{ROOT_KEY_LEN, ShamirError, Share};
use crate::error::Error;
use crate::storage::{Partition, StorageError, Transaction};

/// Key of the Shamir settings record.
pub const SEAL_CONFIG_KEY: &str = "core/seal-config";
/// Key of the keyring encrypted under the root key.
pub const KEYRING_KEY: &str = "core/keyring";
/// Key of the cluster name and id record.
pub const CLUSTER_INFO_KEY: &str = "core/cluster-info";

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The root key, zeroed on drop.
pub type RootKey = Zeroizing<[u8; ROOT_KEY_LEN]>;

/// The Shamir settings: the share count and the threshold that rebuilds the root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealConfig {
    /// How many shares exist.
    pub secret_shares: u8,
    /// How many shares rebuild the root key.
    pub secret_threshold: u8,
}

/// The cluster's name and id, chosen at initialisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// `vault-cluster-` and eight hex digits, as Vault names clusters.
    pub name: String,
    /// A UUID.
    pub id: String,
}

/// The reason a candidate root key did not open the keyring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlockError {
    /// No keyring is stored: the barrier was never initialised.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// GCM authentication failed: the key is not this barrier's root key.
    #[error(
        "the submitted keys do not rebuild this Vault's root key; progress was reset, so \
         submit the threshold number of correct keys again"
    )]
    WrongKey,
    /// The stored keyring is malformed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<UnlockError> for Error {
    fn from(error: UnlockError) -> Error {
        match error {
            UnlockError::Storage(storage) => Error::Storage(storage),
            other => Error::bad_request(other.to_string()),
        }
    }
}

impl From<ShamirError> for Error {
    fn from(error: ShamirError) -> Error {
        Error::bad_request(error.to_string())
    }
}

/// Reads the Shamir settings, or `None` before initialisation.
pub fn read_seal_config(txn: &dyn Transaction) -> Result<Option<SealConfig>, Error> {
    read_json(txn, SEAL_CONFIG_KEY)
}

/// Stores the Shamir settings.
pub fn write_seal_config(txn: &mut dyn Transaction, config: &SealConfig) -> Result<(), Error> {
    write_json(txn, SEAL_CONFIG_KEY, config)
}

/// Reads the cluster name and id, or `None` before initialisation.
pub fn read_cluster_info(txn: &dyn Transaction) -> Result<Option<ClusterInfo>, Error> {
    read_json(txn, CLUSTER_INFO_KEY)
}

/// Stores the cluster name and id.
pub fn write_cluster_info(txn: &mut dyn Transaction, info: &ClusterInfo) -> Result<(), Error> {
    write_json(txn, CLUSTER_INFO_KEY, info)
}

/// Encrypts `keyring` under `root_key` and stores it at `core/keyring`.
pub fn store_keyring(
    txn: &mut dyn Transaction,
    root_key: &RootKey,
    keyring: &Keyring,
    rng: &mut dyn CryptoRngCore,
) -> Result<(), Error> {
    let plaintext = Zeroizing::new(serde_json::to_vec(keyring)?);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let sealed = root_cipher(root_key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: KEYRING_KEY.as_bytes(),
            },
        )
        .map_err(|_| Error::internal("failed to encrypt the keyring"))?;
    let mut record = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    record.push(FORMAT_VERSION);
    record.extend_from_slice(&nonce);
    record.extend_from_slice(&sealed);
    txn.put(Partition::Shared, KEYRING_KEY, &record)?;
    Ok(())
}

/// Reads `core/keyring` and decrypts it with `root_key`.
pub fn load_keyring(txn: &dyn Transaction, root_key: &RootKey) -> Result<Keyring, UnlockError> {
    let record = txn
        .get(Partition::Shared, KEYRING_KEY)?
        .ok_or(UnlockError::NotInitialized)?;
    open_keyring_record(&record, root_key)
}

/// Decrypts a `core/keyring` record with `root_key`, as [`load_keyring`] does with the stored
/// one.
pub fn open_keyring_record(record: &[u8], root_key: &RootKey) -> Result<Keyring, UnlockError> {
    if record.len() < 1 + NONCE_LEN || record[0] != FORMAT_VERSION {
        return Err(corrupt(KEYRING_KEY, "not an encrypted keyring record").into());
    }
    let plaintext = root_cipher(root_key)
        .decrypt(
            Nonce::from_slice(&record[1..=NONCE_LEN]),
            Payload {
                msg: &record[1 + NONCE_LEN..],
                aad: KEYRING_KEY.as_bytes(),
            },
        )
        .map_err(|_| UnlockError::WrongKey)?;
    let plaintext = Zeroizing::new(plaintext);
    serde_json::from_slice(&plaintext)
        .map_err(|error| corrupt(KEYRING_KEY, &format!("invalid keyring JSON: {error}")).into())
}

fn root_cipher(root_key: &RootKey) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(root_key.as_ref())
        .expect("a 32-byte root key is always a valid AES-256 key")
}

fn read_json<T: DeserializeOwned>(txn: &dyn Transaction, key: &str) -> Result<Option<T>, Error> {
    let Some(bytes) = txn.get(Partition::Shared, key)? else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&bytes)
        .map_err(|error| corrupt(key, &format!("invalid JSON: {error}")))?;
    Ok(Some(value))
}

fn write_json<T: Serialize>(txn: &mut dyn Transaction, key: &str, value: &T) -> Result<(), Error> {
    txn.put(Partition::Shared, key, &serde_json::to_vec(value)?)?;
    Ok(())
}

fn corrupt(key: &str, reason: &str) -> StorageError {
    StorageError::Corrupt {
        partition: Partition::Shared,
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The seal state kept in memory: the root key while unsealed, and the key shares submitted so
/// far to unseal, generate a root token or rekey.
#[derive(Default)]
pub struct SealState {
    /// The root key, present only while unsealed.
    pub(crate) root_key: Option<RootKey>,
    /// Unseal keys submitted so far.
    pub(crate) unseal: Progress,
    /// The root token generation in progress.
    pub(crate) generate_root: Option<GenerateRoot>,
    /// The rekey in progress.
    pub(crate) rekey: Option<Rekey>,
}

impl SealState {
    /// Forgets the root key and every share submitted so far; dropping them zeroes them.
    pub(crate) fn clear(&mut self) {
        *self = SealState::default();
    }
}

/// Distinct key shares collected towards a threshold, with the nonce of the operation.
#[derive(Clone, Default)]
pub struct Progress {
    /// The operation's nonce, empty until it starts.
    pub(crate) nonce: String,
    shares: Vec<Share>,
}

impl Progress {
    /// Creates an empty collection for the operation with this nonce.
    pub(crate) fn new(nonce: String) -> Progress {
        Progress {
            nonce,
            shares: Vec::new(),
        }
    }

    /// Counts the distinct shares submitted.
    pub(crate) fn len(&self) -> usize {
        self.shares.len()
    }

    /// Adds `share`. Returns `false` when this exact share was submitted already, which is not
    /// an error; a different share with the same x-coordinate is one.
    pub(crate) fn add(&mut self, share: Share) -> Result<bool, ShamirError> {
        for existing in &self.shares {
            if existing.x() == share.x() {
                return if existing == &share {
                    Ok(false)
                } else {
                    Err(ShamirError::DuplicateCoordinate(share.x()))
                };
            }
        }
        self.shares.push(share);
        Ok(true)
    }

    /// Returns the shares submitted so far.
    pub(crate) fn shares(&self) -> &[Share] {
        &self.shares
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::storage::{MemStorage, Storage};
    use crate::time::Timestamp;

    #[test]
    fn keyring_round_trips_under_root_key() {
        let storage = MemStorage::new();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let keyring = Keyring::generate(&mut rng, Timestamp::from_secs(9));
        let root = Zeroizing::new([3u8; ROOT_KEY_LEN]);
        storage
            .write(|txn| store_keyring(txn, &root, &keyring, &mut rng))
            .unwrap();
        let loaded = storage.read(|txn| load_keyring(txn, &root)).unwrap();
        let loaded = loaded.unwrap();
        assert_eq!(loaded.active_term(), 1);
        assert_eq!(loaded.active_installed(), Timestamp::from_secs(9));
        let sealed = keyring.encrypt(Partition::Shared, "a", b"value", &mut rng);
        let opened = loaded.decrypt(Partition::Shared, "a", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"value");
    }

    #[test]
    fn wrong_root_key_fails_to_open_keyring() {
        let storage = MemStorage::new();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let keyring = Keyring::generate(&mut rng, Timestamp::EPOCH);
        let root = Zeroizing::new([3u8; ROOT_KEY_LEN]);
        storage
            .write(|txn| store_keyring(txn, &root, &keyring, &mut rng))
            .unwrap();
        let other = Zeroizing::new([4u8; ROOT_KEY_LEN]);
        let result = storage.read(|txn| load_keyring(txn, &other)).unwrap();
        assert_eq!(result.unwrap_err(), UnlockError::WrongKey);
    }

    #[test]
    fn stored_keyring_hides_key_material() {
        let storage = MemStorage::new();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keyring = Keyring::generate(&mut rng, Timestamp::EPOCH);
        let root = Zeroizing::new([3u8; ROOT_KEY_LEN]);
        storage
            .write(|txn| store_keyring(txn, &root, &keyring, &mut rng))
            .unwrap();
        let dump = storage.dump(Partition::Shared);
        assert_eq!(dump.len(), 1);
        assert!(!dump[0].1.windows(5).any(|window| window == b"terms"));
    }

    #[test]
    fn missing_keyring_means_not_initialized() {
        let storage = MemStorage::new();
        let root = Zeroizing::new([3u8; ROOT_KEY_LEN]);
        let result = storage.read(|txn| load_keyring(txn, &root)).unwrap();
        assert_eq!(result.unwrap_err(), UnlockError::NotInitialized);
    }
}
