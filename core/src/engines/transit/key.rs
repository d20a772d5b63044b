//! Transit key policies: the key types, their versions of key material and how a policy is
//! stored, behind the barrier, at `policy/<name>` below the mount.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::barrier::SecureView;
use crate::engines::Location;
use crate::error::Error;
use crate::time::Timestamp;

/// Vault's message for ciphertexts, signatures and HMACs below `min_decryption_version`.
pub(super) const TOO_OLD: &str =
    "ciphertext or signature version is disallowed by policy (too old)";

/// Key material: zeroed on drop, base64 in storage, never printed.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct KeyBytes(Zeroizing<Vec<u8>>);

impl KeyBytes {
    /// Wraps key material.
    pub(super) fn new(bytes: Vec<u8>) -> KeyBytes {
        KeyBytes(Zeroizing::new(bytes))
    }

    /// Draws `length` random bytes from `rng`.
    pub(super) fn random(rng: &mut dyn CryptoRngCore, length: usize) -> KeyBytes {
        let mut bytes = Zeroizing::new(vec![0; length]);
        rng.fill_bytes(&mut bytes);
        KeyBytes(bytes)
    }

    /// Returns the raw bytes. Callers must not log them.
    pub(super) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(..)")
    }
}

impl Serialize for KeyBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Display writes the base64 text straight into the output, which the caller zeroes.
        serializer.collect_str(&Base64Display::new(&self.0, &STANDARD))
    }
}

impl<'de> Deserialize<'de> for KeyBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyBytes, D::Error> {
        deserializer.deserialize_str(KeyBytesVisitor)
    }
}

struct KeyBytesVisitor;

impl Visitor<'_> for KeyBytesVisitor {
    type Value = KeyBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 key material")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<KeyBytes, E> {
        // Reserving the full length first keeps the decoder from leaving copies behind when
        // the vector grows.
        let mut bytes = Zeroizing::new(Vec::with_capacity(text.len()));
        STANDARD
            .decode_vec(text, &mut bytes)
            .map_err(|_| E::custom("invalid base64 in stored key material"))?;
        Ok(KeyBytes(bytes))
    }
}

/// A transit key type, with Vault's wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum KeyType {
    /// AES-128 in GCM with a 96-bit nonce.
    #[serde(rename = "aes128-gcm96")]
    Aes128Gcm96,
    /// AES-256 in GCM with a 96-bit nonce.
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    /// ChaCha20-Poly1305 with a 96-bit nonce.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 with a 192-bit nonce.
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    /// Ed25519 signatures.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA over NIST P-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA over NIST P-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// ECDSA over NIST P-521.
    #[serde(rename = "ecdsa-p521")]
    EcdsaP521,
    /// RSA with a 2048-bit modulus.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    /// A bare HMAC key.
    #[serde(rename = "hmac")]
    Hmac,
}

impl KeyType {
    const ALL: [KeyType; 12] = [
        KeyType::Aes128Gcm96,
        KeyType::Aes256Gcm96,
        KeyType::ChaCha20Poly1305,
        KeyType::XChaCha20Poly1305,
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::Hmac,
    ];

    /// Parses a wire name such as `aes256-gcm96`.
    pub(super) fn parse(text: &str) -> Result<KeyType, Error> {
        KeyType::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = KeyType::ALL.iter().map(|kind| kind.name()).collect();
                Error::bad_request(format!(
                    "unknown key type {text:?}: use one of {}",
                    names.join(", ")
                ))
            })
    }

    /// Returns the wire name.
    pub(super) fn name(self) -> &'static str {
        match self {
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::XChaCha20Poly1305 => "xchacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::EcdsaP521 => "ecdsa-p521",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Hmac => "hmac",
        }
    }

    /// Returns whether the type encrypts and decrypts.
    pub(super) fn supports_encryption(self) -> bool {
        matches!(
            self,
            KeyType::Aes128Gcm96
                | KeyType::Aes256Gcm96
                | KeyType::ChaCha20Poly1305
                | KeyType::XChaCha20Poly1305
        )
    }

    /// Returns whether the type signs and verifies.
    pub(super) fn supports_signing(self) -> bool {
        matches!(
            self,
            KeyType::Ed25519
                | KeyType::EcdsaP256
                | KeyType::EcdsaP384
                | KeyType::EcdsaP521
                | KeyType::Rsa2048
                | KeyType::Rsa3072
                | KeyType::Rsa4096
        )
    }

    /// Returns whether the type can derive a key per context.
    pub(super) fn supports_derivation(self) -> bool {
        self.supports_encryption() || self == KeyType::Ed25519
    }

    /// Returns whether the type has a public key to show.
    fn is_asymmetric(self) -> bool {
        self.supports_signing()
    }

    /// Returns the length of a symmetric key in bytes.
    pub(super) fn symmetric_key_len(self) -> usize {
        match self {
            KeyType::Aes128Gcm96 => 16,
            _ => 32,
        }
    }

    /// Generates the key material of one version. `hmac_size` is the length of an HMAC key.
    fn generate(self, rng: &mut dyn CryptoRngCore, hmac_size: usize) -> Result<KeyBytes, Error> {
        let mut rng = rng;
        match self {
            KeyType::Aes128Gcm96
            | KeyType::Aes256Gcm96
            | KeyType::ChaCha20Poly1305
            | KeyType::XChaCha20Poly1305
            | KeyType::Ed25519 => Ok(KeyBytes::random(rng, self.symmetric_key_len())),
            KeyType::Hmac => Ok(KeyBytes::random(rng, hmac_size)),
            KeyType::EcdsaP256 => {
                let key = p256::ecdsa::SigningKey::random(&mut rng);
                Ok(KeyBytes::new(key.to_bytes().to_vec()))
            }
            KeyType::EcdsaP384 => {
                let key = p384::ecdsa::SigningKey::random(&mut rng);
                Ok(KeyBytes::new(key.to_bytes().to_vec()))
            }
            KeyType::EcdsaP521 => {
                let key = p521::ecdsa::SigningKey::random(&mut rng);
                Ok(KeyBytes::new(key.to_bytes().to_vec()))
            }
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                use rsa::pkcs8::EncodePrivateKey;

                let bits = self.rsa_bits();
                let key = rsa::RsaPrivateKey::new(&mut rng, bits).map_err(|error| {
                    Error::internal(format!("failed to generate an RSA-{bits} key: {error}"))
                })?;
                let der = key.to_pkcs8_der().map_err(|error| {
                    Error::internal(format!("failed to encode an RSA-{bits} key: {error}"))
                })?;
                Ok(KeyBytes::new(der.as_bytes().to_vec()))
            }
        }
    }

    /// Returns the modulus size of an RSA type, 0 for the others.
    pub(super) fn rsa_bits(self) -> usize {
        match self {
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa3072 => 3072,
            KeyType::Rsa4096 => 4096,
            _ => 0,
        }
    }
}

/// One version of a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct KeyVersion {
    /// When the version was made.
    pub(super) created: Timestamp,
    /// The key of the key type: a symmetric key, an Ed25519 seed, an ECDSA scalar or an RSA
    /// PKCS#8 document.
    pub(super) key: KeyBytes,
    /// The key that `hmac/` uses with this version, for every key type.
    pub(super) hmac_key: KeyBytes,
}

/// A named transit key with all of its versions and settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Policy {
    /// The key's name.
    pub(super) name: String,
    /// The key type.
    #[serde(rename = "type")]
    pub(super) kind: KeyType,
    /// Whether each request derives its key from `context`.
    pub(super) derived: bool,
    /// Whether equal plaintexts under the same context give equal ciphertexts.
    pub(super) convergent_encryption: bool,
    /// Whether the key may be exported.
    pub(super) exportable: bool,
    /// Whether a plaintext backup may be taken.
    pub(super) allow_plaintext_backup: bool,
    /// Whether `DELETE keys/:name` may remove the key.
    pub(super) deletion_allowed: bool,
    /// The oldest version that may decrypt, verify or check an HMAC.
    pub(super) min_decryption_version: u32,
    /// The oldest version that may encrypt, or 0 for any.
    pub(super) min_encryption_version: u32,
    /// The newest version.
    pub(super) latest_version: u32,
    /// The oldest version still stored, 0 before the first trim.
    #[serde(default)]
    pub(super) min_available_version: u32,
    /// Seconds between automatic rotations, 0 for none.
    pub(super) auto_rotate_period: u64,
    /// The length in bytes of each version's HMAC key.
    pub(super) hmac_key_size: usize,
    /// Every version by number.
    pub(super) versions: BTreeMap<u32, KeyVersion>,
}

/// The settings of a new key.
#[derive(Clone, Debug)]
pub(super) struct NewKey {
    /// The key type.
    pub(super) kind: KeyType,
    /// Whether keys are derived per context.
    pub(super) derived: bool,
    /// Whether encryption is convergent.
    pub(super) convergent_encryption: bool,
    /// Whether the key may be exported.
    pub(super) exportable: bool,
    /// Whether a plaintext backup may be taken.
    pub(super) allow_plaintext_backup: bool,
    /// Seconds between automatic rotations.
    pub(super) auto_rotate_period: u64,
    /// The HMAC key length in bytes.
    pub(super) key_size: usize,
}

impl NewKey {
    /// Returns the settings of a key of `kind` with every option off.
    pub(super) fn of_type(kind: KeyType) -> NewKey {
        NewKey {
            kind,
            derived: false,
            convergent_encryption: false,
            exportable: false,
            allow_plaintext_backup: false,
            auto_rotate_period: 0,
            key_size: 32,
        }
    }
}

impl Policy {
    /// Makes a key with version 1, after checking that the settings fit the type.
    pub(super) fn create(
        name: &str,
        settings: &NewKey,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Policy, Error> {
        if settings.derived && !settings.kind.supports_derivation() {
            return Err(Error::bad_request(format!(
                "key derivation is not supported for key type {}",
                settings.kind.name()
            )));
        }
        if settings.convergent_encryption && !settings.derived {
            return Err(Error::bad_request(
                "convergent encryption requires derivation to be enabled, so context is required",
            ));
        }
        if settings.convergent_encryption && !settings.kind.supports_encryption() {
            return Err(Error::bad_request(format!(
                "convergent encryption is not supported for key type {}",
                settings.kind.name()
            )));
        }
        let mut policy = Policy {
            name: name.to_owned(),
            kind: settings.kind,
            derived: settings.derived,
            convergent_encryption: settings.convergent_encryption,
            exportable: settings.exportable,
            allow_plaintext_backup: settings.allow_plaintext_backup,
            deletion_allowed: false,
            min_decryption_version: 1,
            min_encryption_version: 0,
            latest_version: 0,
            min_available_version: 0,
            auto_rotate_period: settings.auto_rotate_period,
            hmac_key_size: settings.key_size,
            versions: BTreeMap::new(),
        };
        policy.rotate(now, rng)?;
        Ok(policy)
    }

    /// Adds a new latest version.
    pub(super) fn rotate(
        &mut self,
        now: Timestamp,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), Error> {
        let key = self.kind.generate(rng, self.hmac_key_size)?;
        let hmac_key = match self.kind {
            KeyType::Hmac => key.clone(),
            _ => KeyBytes::random(rng, 32),
        };
        let version = self.latest_version + 1;
        self.versions.insert(
            version,
            KeyVersion {
                created: now,
                key,
                hmac_key,
            },
        );
        self.latest_version = version;
        Ok(())
    }

    /// The version to encrypt or sign with: `requested`, or the latest for 0.
    pub(super) fn encryption_version(&self, requested: u32) -> Result<u32, Error> {
        if requested == 0 {
            return Ok(self.latest_version);
        }
        if requested > self.latest_version {
            return Err(Error::bad_request(format!(
                "requested version for encryption is higher than the latest key version: \
                 key_version {requested}, latest version {}",
                self.latest_version
            )));
        }
        if requested < self.min_encryption_version {
            return Err(Error::bad_request(format!(
                "requested version for encryption is less than the minimum encryption key \
                 version: key_version {requested}, min_encryption_version {}",
                self.min_encryption_version
            )));
        }
        Ok(requested)
    }

    /// The version named in a ciphertext, signature or HMAC, after checking that policy allows
    /// it to be used for decryption or verification.
    pub(super) fn decryption_version(&self, version: u32) -> Result<&KeyVersion, Error> {
        // Vault's first keys were numbered from 0, and it still reads v0 as v1.
        let version = version.max(1);
        if version > self.latest_version {
            return Err(Error::bad_request(format!(
                "invalid ciphertext: version is too new: v{version} is above the latest version \
                 {} of key {:?}",
                self.latest_version, self.name
            )));
        }
        if version < self.min_decryption_version {
            return Err(Error::bad_request(format!(
                "{TOO_OLD}: v{version} is below min_decryption_version {}",
                self.min_decryption_version
            )));
        }
        self.version(version)
    }

    /// The key of `version`, which must exist.
    pub(super) fn version(&self, version: u32) -> Result<&KeyVersion, Error> {
        self.versions.get(&version).ok_or_else(|| {
            Error::bad_request(format!(
                "version {version} of key {:?} no longer exists",
                self.name
            ))
        })
    }

    /// Returns the key to encrypt or decrypt with: the version's key, or for a derived policy
    /// the key derived from `context` with HKDF-SHA256.
    pub(super) fn symmetric_key(
        &self,
        version: &KeyVersion,
        context: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if !self.derived {
            return Ok(Zeroizing::new(version.key.expose().to_vec()));
        }
        let context = required_context(context)?;
        derive(version.key.expose(), context, self.kind.symmetric_key_len())
    }
}

/// Returns the context of a derived key, or Vault's error when it is missing.
pub(super) fn required_context(context: Option<&[u8]>) -> Result<&[u8], Error> {
    match context {
        Some(context) if !context.is_empty() => Ok(context),
        _ => Err(Error::bad_request(
            "missing 'context' for key derivation: the key was created using a derived key, \
             which means additional, per-request information must be included in order to \
             perform operations with the key",
        )),
    }
}

/// Derives `length` bytes from `key` and `context` with HKDF-SHA256 (no salt, the context as
/// the info string), as Vault's `hkdf_sha256` KDF does.
pub(super) fn derive(
    key: &[u8],
    context: &[u8],
    length: usize,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut output = Zeroizing::new(vec![0; length]);
    Hkdf::<Sha256>::new(None, key)
        .expand(context, &mut output)
        .map_err(|_| Error::internal("key derivation failed: output length out of range"))?;
    Ok(output)
}

/// Returns the storage key of the policy `name`.
fn storage_key(location: &Location, name: &str) -> String {
    location.key(&format!("policy/{name}"))
}

/// Returns the storage key that exists exactly when the key `name` exists.
pub(super) fn existence_key(location: &Location, name: &str) -> String {
    storage_key(location, name)
}

/// Reads the policy `name`, or `None` when there is none.
pub(super) fn load(
    location: &Location,
    view: &SecureView<'_>,
    name: &str,
) -> Result<Option<Policy>, Error> {
    view.get_json(location.partition, &storage_key(location, name))
}

/// Reads the policy `name`, or fails with Vault's 400 `encryption key not found`.
pub(super) fn load_existing(
    location: &Location,
    view: &SecureView<'_>,
    name: &str,
) -> Result<Policy, Error> {
    load(location, view, name)?.ok_or_else(|| {
        Error::bad_request(format!(
            "encryption key not found: no key named {name:?} exists on this mount"
        ))
    })
}

/// Writes the policy through the barrier.
pub(super) fn save(
    location: &Location,
    view: &mut SecureView<'_>,
    policy: &Policy,
) -> Result<(), Error> {
    view.put_json(
        location.partition,
        &storage_key(location, &policy.name),
        policy,
    )
}

/// Deletes the policy `name` (a blind delete).
pub(super) fn delete(
    location: &Location,
    view: &mut SecureView<'_>,
    name: &str,
) -> Result<(), Error> {
    view.delete(location.partition, &storage_key(location, name))
}

/// Lists the names of every key on the mount.
pub(super) fn list(location: &Location, view: &SecureView<'_>) -> Result<Vec<String>, Error> {
    view.list(location.partition, &location.key("policy/"))
}

impl KeyType {
    /// Returns the `name` of a public key in `keys/:name`: the curve, or the RSA type.
    fn public_key_name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "P-256",
            KeyType::EcdsaP384 => "P-384",
            KeyType::EcdsaP521 => "P-521",
            other => other.name(),
        }
    }
}

/// Builds the `keys` map of a key read: creation times in Unix seconds for symmetric keys, and for
/// asymmetric keys an object with the creation time and the public key.
pub(super) fn versions_json(policy: &Policy) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;

    let mut keys = serde_json::Map::new();
    for (number, version) in &policy.versions {
        let value = if policy.kind.is_asymmetric() {
            let public_key = if policy.derived {
                String::new()
            } else {
                super::sign::public_key_text(policy.kind, &version.key).unwrap_or_default()
            };
            json!({
                "creation_time": version.created.to_rfc3339(),
                "name": policy.kind.public_key_name(),
                "public_key": public_key,
            })
        } else {
            json!(version.created.as_secs())
        };
        keys.insert(number.to_string(), value);
    }
    keys
}
