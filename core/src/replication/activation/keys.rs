//! Ed25519 key pairs drawn from the caller's RNG, in the forms rcgen and jsonwebtoken take.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Errors from loading or parsing a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The private key is not an Ed25519 key in PKCS#8 DER.
    #[error("invalid private key: expected an Ed25519 key in PKCS#8 DER")]
    InvalidPrivateKey,
    /// The public key is not base64.
    #[error("invalid secondary_public_key: expected base64 of the 32 raw bytes of an Ed25519 key")]
    PublicKeyNotBase64,
    /// The public key has the wrong length.
    #[error(
        "invalid secondary_public_key: decoded to {length} bytes, expected the 32 raw bytes of an \
         Ed25519 key"
    )]
    PublicKeyLength {
        /// Decoded length in bytes.
        length: usize,
    },
    /// The 32 bytes are not a point on the Ed25519 curve.
    #[error("invalid secondary_public_key: the 32 bytes are not a valid Ed25519 public key")]
    PublicKeyNotOnCurve,
}

/// An Ed25519 private key as PKCS#8 v2 DER, zeroized on drop.
///
/// Serialises as base64 of the DER. `Debug` prints only the type name.
///
/// NOTE: signing copies the key into ring's key pair (inside rcgen and jsonwebtoken) and into
/// jsonwebtoken's `EncodingKey` for the duration of one call. Those copies are not zeroized.
#[derive(Clone)]
pub struct PrivateKey {
    pkcs8_der: Zeroizing<Vec<u8>>,
}

impl PrivateKey {
    /// Generates a key pair from 32 bytes of the caller's RNG.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> PrivateKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        let signing_key = SigningKey::from_bytes(&seed);
        let document = signing_key
            .to_pkcs8_der()
            .expect("encoding a 32-byte Ed25519 seed as PKCS#8 only allocates");
        PrivateKey {
            pkcs8_der: Zeroizing::new(document.as_bytes().to_vec()),
        }
    }

    /// Loads a key from PKCS#8 DER, checking that it is an Ed25519 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
        SigningKey::from_pkcs8_der(der).map_err(|_| KeyError::InvalidPrivateKey)?;
        Ok(PrivateKey {
            pkcs8_der: Zeroizing::new(der.to_vec()),
        })
    }

    /// The PKCS#8 DER. Callers must not log it.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let signing_key = self.signing_key();
        PublicKey(signing_key.verifying_key().to_bytes())
    }

    /// Converts the key to rcgen's form for signing certificates.
    pub(crate) fn rcgen_key_pair(&self) -> Zeroizing<rcgen::KeyPair> {
        let key_pair = rcgen::KeyPair::try_from(self.pkcs8_der.as_slice())
            .expect("the DER was produced or checked as Ed25519 PKCS#8 when this key was built");
        Zeroizing::new(key_pair)
    }

    /// Returns the secret scalar bytes of this key, which as an X25519 private key match the
    /// public key's Montgomery form.
    pub(crate) fn scalar_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing_key().to_scalar_bytes())
    }

    fn signing_key(&self) -> SigningKey {
        SigningKey::from_pkcs8_der(&self.pkcs8_der)
            .expect("the DER was produced or checked as Ed25519 PKCS#8 when this key was built")
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// Compares in constant time, because the bytes are secret.
impl PartialEq for PrivateKey {
    fn eq(&self, other: &PrivateKey) -> bool {
        bool::from(self.pkcs8_der.as_slice().ct_eq(other.pkcs8_der.as_slice()))
    }
}

impl Eq for PrivateKey {}

impl Serialize for PrivateKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(STANDARD.encode(self.pkcs8_der.as_slice()));
        serializer.serialize_str(&encoded)
    }
}

impl<'de> Deserialize<'de> for PrivateKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PrivateKey, D::Error> {
        let encoded = Zeroizing::new(String::deserialize(deserializer)?);
        let der = STANDARD
            .decode(encoded.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| serde::de::Error::custom("private key is not valid base64"))?;
        PrivateKey::from_pkcs8_der(&der).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key: the 32 raw bytes.
///
/// Serialises as base64 of the raw bytes, the form `secondary_public_key` takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses base64 of the 32 raw bytes, rejecting anything that is not an Ed25519 point.
    pub fn from_base64(encoded: &str) -> Result<PublicKey, KeyError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| KeyError::PublicKeyNotBase64)?;
        PublicKey::from_raw(&bytes)
    }

    /// Checks 32 raw bytes as an Ed25519 public key.
    pub fn from_raw(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| KeyError::PublicKeyLength {
            length: bytes.len(),
        })?;
        VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::PublicKeyNotOnCurve)?;
        Ok(PublicKey(raw))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Base64 of the 32 raw bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl rcgen::PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        PublicKey::from_base64(&encoded).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers that store DER bytes as standard base64.
pub(crate) mod der_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(der: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(der))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        STANDARD
            .decode(encoded.as_bytes())
            .map_err(|_| serde::de::Error::custom("certificate is not valid base64"))
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn same_seed_gives_same_key() {
        let first = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        let second = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!(first.pkcs8_der(), second.pkcs8_der());
        assert_eq!(first.public_key(), second.public_key());
    }

    #[test]
    fn private_key_serde_round_trip() {
        let key = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(2));
        let json = serde_json::to_string(&key).unwrap();
        let back: PrivateKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.pkcs8_der(), key.pkcs8_der());
    }

    #[test]
    fn private_key_debug_prints_no_bytes() {
        let key = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(3));
        let printed = format!("{key:?}");
        assert_eq!(printed, "PrivateKey(..)");
        let encoded = STANDARD.encode(key.pkcs8_der());
        assert!(!printed.contains(&encoded[..16]));
    }

    #[test]
    fn public_key_base64_round_trip() {
        let key = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(4)).public_key();
        assert_eq!(PublicKey::from_base64(&key.to_base64()), Ok(key));
    }

    #[test]
    fn public_key_rejects_wrong_length_and_non_base64() {
        assert_eq!(
            PublicKey::from_base64(&STANDARD.encode([7u8; 31])),
            Err(KeyError::PublicKeyLength { length: 31 })
        );
        assert_eq!(
            PublicKey::from_base64("not base64!"),
            Err(KeyError::PublicKeyNotBase64)
        );
    }

    #[test]
    fn private_key_rejects_non_ed25519_der() {
        assert_eq!(
            PrivateKey::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).unwrap_err(),
            KeyError::InvalidPrivateKey
        );
    }
}
