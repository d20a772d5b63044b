//! The barrier: seal state, the root key and the keyring that encrypts every stored value.
//!
//! Every value a handler stores goes through a [`SecureView`], which encrypts it with the
//! keyring's active term using AES-256-GCM and binds it to its partition and key as associated
//! data, so a value copied to another key does not decrypt. Storage, the WAL and the replication
//! stream only ever see ciphertext.

pub mod generate_root;
pub mod init;
mod keyring;
pub(crate) mod params;
pub mod rekey;
pub mod rotate;
pub mod seal;
pub mod shamir;
#[cfg(test)]
pub(crate) mod testing;
pub mod unseal;

pub use keyring::{KeyTerm, Keyring, KeyringError};
pub use seal::{ClusterInfo, RootKey, SealConfig, SealState};
pub use shamir::{ShamirError, Share, decode_share};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rand_core::CryptoRngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::storage::{Partition, StorageError, Transaction, list_children};

/// The seal state of a node.
///
/// While sealed it holds no key material. Unsealing reconstructs the root key from Shamir
/// shares, decrypts the keyring with it, and keeps both in memory until the node seals again.
///
/// Lock order: `seal_state` before `keyring`. Code holding the seal state may read or set the
/// keyring, never the other way round.
#[derive(Default)]
pub struct Barrier {
    keyring: RwLock<Option<Arc<Keyring>>>,
    seal: Mutex<SealState>,
}

impl Barrier {
    /// A sealed barrier.
    pub fn new() -> Barrier {
        Barrier::default()
    }

    /// Whether the barrier is sealed.
    pub fn is_sealed(&self) -> bool {
        self.keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// The keyring, or the 503 `Vault is sealed` error while sealed.
    pub fn keyring(&self) -> Result<Arc<Keyring>, Error> {
        self.keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(Error::sealed)
    }

    /// Replaces the keyring in memory, leaving the root key as it is.
    ///
    /// To unseal, use `sys/unseal`: it also installs the root key, which `sys/rotate` and
    /// `sys/rekey` need, and [`Barrier::validate`] fails for a keyring without one.
    pub fn set_keyring(&self, keyring: Option<Arc<Keyring>>) {
        *self.keyring.write().unwrap_or_else(PoisonError::into_inner) = keyring;
    }

    /// Checks the seal invariants: the root key is in memory exactly while the keyring is, and
    /// no unseal keys are pending while unsealed.
    pub fn validate(&self) -> Result<(), &'static str> {
        let state = self.seal_state();
        let sealed = self.is_sealed();
        if sealed == state.root_key.is_some() {
            return Err("the root key is in memory exactly when the keyring is not");
        }
        if !sealed && state.unseal.len() > 0 {
            return Err("unseal keys are pending while unsealed");
        }
        Ok(())
    }

    /// Seals: drops the keyring, the root key and every share submitted so far.
    pub fn seal(&self) {
        let mut state = self.seal_state();
        state.clear();
        self.set_keyring(None);
    }

    /// Locks the in-memory seal state. Handlers hold it for the whole request so that two
    /// requests cannot interleave their share submissions.
    pub(crate) fn seal_state(&self) -> MutexGuard<'_, SealState> {
        self.seal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unseals with `root_key` and the keyring it decrypted. The caller holds `state`.
    pub(crate) fn install(&self, state: &mut SealState, root_key: RootKey, keyring: Keyring) {
        state.root_key = Some(root_key);
        self.set_keyring(Some(Arc::new(keyring)));
    }

    /// Reloads the keyring from `core/keyring` when it is among the `changed` keys, as after a
    /// rotation replicated from another node. Does nothing while sealed or for `None`, because
    /// unsealing has just loaded the keyring.
    ///
    /// NOTE: a rekey with `rotate_root_key` on another node changes the root key, and this
    /// node's root key then no longer opens the stored keyring; that returns a 400 and keeps
    /// the keyring in memory as it was.
    pub fn reload(
        &self,
        txn: &dyn Transaction,
        changed: Option<&[(Partition, String)]>,
    ) -> Result<(), Error> {
        let Some(changed) = changed else {
            return Ok(());
        };
        let touched = changed
            .iter()
            .any(|(partition, key)| *partition == Partition::Shared && key == seal::KEYRING_KEY);
        if !touched {
            return Ok(());
        }
        let state = self.seal_state();
        let Some(root_key) = state.root_key.as_ref() else {
            return Ok(());
        };
        let keyring = seal::load_keyring(txn, root_key)?;
        self.set_keyring(Some(Arc::new(keyring)));
        Ok(())
    }

    /// A view of `txn` that encrypts and decrypts with the current keyring.
    pub fn view<'a>(
        &self,
        txn: &'a mut dyn Transaction,
        rng: &'a mut dyn CryptoRngCore,
    ) -> Result<SecureView<'a>, Error> {
        Ok(SecureView {
            raw: txn,
            keyring: self.keyring()?,
            rng,
        })
    }
}

/// A transaction seen through the barrier: plaintext in, ciphertext stored.
pub struct SecureView<'a> {
    raw: &'a mut dyn Transaction,
    keyring: Arc<Keyring>,
    rng: &'a mut dyn CryptoRngCore,
}

impl<'a> SecureView<'a> {
    /// A view over `raw` with an explicit keyring, for code that holds one already.
    pub fn new(
        raw: &'a mut dyn Transaction,
        keyring: Arc<Keyring>,
        rng: &'a mut dyn CryptoRngCore,
    ) -> SecureView<'a> {
        SecureView { raw, keyring, rng }
    }

    /// The transaction underneath, which stores ciphertext.
    pub fn raw(&mut self) -> &mut dyn Transaction {
        self.raw
    }

    /// The RNG of this request.
    pub fn rng(&mut self) -> &mut dyn CryptoRngCore {
        self.rng
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Reads and decrypts the value at `key`.
    pub fn get(
        &self,
        partition: Partition,
        key: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let Some(ciphertext) = self.raw.get(partition, key)? else {
            return Ok(None);
        };
        let plaintext = self
            .keyring
            .decrypt(partition, key, &ciphertext)
            .map_err(|error| StorageError::Corrupt {
                partition,
                key: key.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Some(plaintext))
    }

    /// Reads, decrypts and decodes the JSON value at `key`.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        partition: Partition,
        key: &str,
    ) -> Result<Option<T>, Error> {
        let Some(plaintext) = self.get(partition, key)? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&plaintext).map_err(|error| StorageError::Corrupt {
            partition,
            key: key.to_owned(),
            reason: format!("invalid JSON: {error}"),
        })?;
        Ok(Some(value))
    }

    /// Encrypts and stores `plaintext` at `key`.
    pub fn put(&mut self, partition: Partition, key: &str, plaintext: &[u8]) -> Result<(), Error> {
        let ciphertext = self.keyring.encrypt(partition, key, plaintext, self.rng);
        self.raw.put(partition, key, &ciphertext)?;
        Ok(())
    }

    /// Encodes `value` as JSON, encrypts it and stores it at `key`.
    pub fn put_json<T: Serialize>(
        &mut self,
        partition: Partition,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let plaintext = Zeroizing::new(serde_json::to_vec(value)?);
        self.put(partition, key, &plaintext)
    }

    /// Deletes `key`. The delete is blind: it is a write even when the key is absent.
    pub fn delete(&mut self, partition: Partition, key: &str) -> Result<(), Error> {
        self.raw.delete(partition, key)?;
        Ok(())
    }

    /// The names directly below `prefix`, Vault style (folders end in `/`).
    pub fn list(&self, partition: Partition, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(list_children(self.raw, partition, prefix)?)
    }

    /// Every key below `prefix`, sorted.
    pub fn scan(&self, partition: Partition, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self.raw.scan(partition, prefix, None, None)?)
    }
}
