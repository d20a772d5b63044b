//! The audit device table and one device's settings and HMAC key.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::storage::{Partition, StorageError, Transaction};

const SHARED_TABLE: &str = "core/audit";
const LOCAL_TABLE: &str = "core/local-audit";

/// A device's HMAC-SHA256 key, 32 random bytes. `Debug` prints only the type name, the key
/// never leaves the barrier, and the bytes are zeroed on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmacKey(#[serde(with = "hex_bytes")] Zeroizing<Vec<u8>>);

impl HmacKey {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> HmacKey {
        HmacKey(Zeroizing::new(bytes))
    }

    /// Returns `hmac-sha256:` and the hex HMAC-SHA256 of `value` under this key, the form Vault
    /// writes in audit entries and `sys/audit-hash` returns.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .expect("HMAC-SHA256 accepts a key of any length");
        mac.update(value.as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub(super) fn serialize<S: Serializer>(
        bytes: &Zeroizing<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes.as_slice()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        hex::decode(text.as_str())
            .map(Zeroizing::new)
            .map_err(serde::de::Error::custom)
    }
}

/// One enabled audit device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDevice {
    /// The device path with a trailing slash, such as `file/`.
    pub path: String,
    /// The device type; only `file` is served.
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text shown in listings.
    pub description: String,
    /// The options as given: `file_path`, `mode`, `format`, `prefix`, `log_raw`,
    /// `hmac_accessor`.
    pub options: BTreeMap<String, String>,
    /// Whether the device lives only on this node, so it is never replicated.
    pub local: bool,
    /// The key of this device's hashes.
    pub hmac_key: HmacKey,
}

impl AuditDevice {
    /// Returns the file the io layer appends this device's entries to.
    pub fn file_path(&self) -> &str {
        self.options.get("file_path").map_or("", String::as_str)
    }

    /// Returns the permission bits of a new file, from the `mode` option (octal, default `0600`).
    pub fn file_mode(&self) -> u32 {
        self.options
            .get("mode")
            .and_then(|mode| u32::from_str_radix(mode, 8).ok())
            .unwrap_or(0o600)
    }

    /// Returns the text written before every line, from the `prefix` option.
    pub fn prefix(&self) -> &str {
        self.options.get("prefix").map_or("", String::as_str)
    }

    /// Returns whether token accessors are hashed (the `hmac_accessor` option, default true).
    pub fn hmac_accessor(&self) -> bool {
        self.options.get("hmac_accessor").map(String::as_str) != Some("false")
    }

    /// Builds the entry as `sys/audit` lists it, without the HMAC key.
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "description": self.description,
            "options": self.options,
            "local": self.local,
            "path": self.path,
        })
    }
}

#[derive(Default, Serialize, Deserialize)]
struct StoredTable {
    entries: Vec<AuditDevice>,
}

fn location(local: bool) -> (Partition, &'static str) {
    if local {
        (Partition::Local, LOCAL_TABLE)
    } else {
        (Partition::Shared, SHARED_TABLE)
    }
}

/// Reads both halves of the device table, shared devices first.
pub(crate) fn list(core: &Core, txn: &dyn Transaction) -> Result<Vec<AuditDevice>, Error> {
    let keyring = core.barrier.keyring()?;
    let mut devices = Vec::new();
    for local in [false, true] {
        let (partition, key) = location(local);
        let Some(ciphertext) = txn.get(partition, key)? else {
            continue;
        };
        let corrupt = |reason: String| StorageError::Corrupt {
            partition,
            key: key.to_owned(),
            reason,
        };
        let plaintext = keyring
            .decrypt(partition, key, &ciphertext)
            .map_err(|error| corrupt(error.to_string()))?;
        let stored: StoredTable = serde_json::from_slice(&plaintext)
            .map_err(|error| corrupt(format!("invalid JSON: {error}")))?;
        devices.extend(stored.entries);
    }
    Ok(devices)
}

/// Returns the device at `path` (with its trailing slash).
pub(crate) fn find(
    core: &Core,
    txn: &dyn Transaction,
    path: &str,
) -> Result<Option<AuditDevice>, Error> {
    Ok(list(core, txn)?
        .into_iter()
        .find(|device| device.path == path))
}

/// Replaces the shared or local half of the table with `devices`.
pub(crate) fn save_devices(
    view: &mut SecureView<'_>,
    local: bool,
    devices: Vec<AuditDevice>,
) -> Result<(), Error> {
    let (partition, key) = location(local);
    view.put_json(partition, key, &StoredTable { entries: devices })
}
