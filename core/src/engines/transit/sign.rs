//! `sign/`, `verify/` and `hmac/`, and the public keys that `keys/:name` shows.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, Verifier as _};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier, RandomizedPrehashSigner};
use rand_core::CryptoRngCore;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::barrier::SecureView;
use crate::engines::Location;
use crate::engines::params;
use crate::error::Error;
use crate::request::Response;

use super::aead::{decode_base64, encode_versioned, split_versioned};
use super::crypt::{item_version, optional_base64, required};
use super::hashing::HashAlgorithm;
use super::key::{self, KeyBytes, KeyType, KeyVersion, Policy, derive, required_context};

/// Serves `hmac/:name[/:algorithm]`: `{input}` to `{hmac: "vault:vN:<base64>"}`, with the
/// version's HMAC key.
pub(super) fn hmac(
    name: &str,
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let policy = key::load_existing(location, view, name)?;
    let algorithm = hmac_algorithm(url_algorithm, data)?;
    let default_version = super::version_field(data, "key_version")?;
    super::run_batch(data, |item| {
        let input = required(item, "input", "missing input for HMAC")?;
        let input = decode_base64("input", &input)?;
        let version = policy.encryption_version(item_version(item, data, default_version)?)?;
        let tag = compute_hmac(algorithm, policy.version(version)?, &input)?;
        let mut result = Map::new();
        result.insert("hmac".into(), json!(encode_versioned(version, &tag)));
        Ok(result)
    })
}

/// Serves `sign/:name[/:hash_algorithm]`: `{input}` to `{signature, key_version}`.
pub(super) fn sign(
    name: &str,
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let policy = load_signing_key(location, view, name)?;
    let options = SignOptions::parse(url_algorithm, data)?;
    let default_version = super::version_field(data, "key_version")?;
    let rng = view.rng();
    super::run_batch(data, |item| {
        let input = required(item, "input", "missing input to sign")?;
        let input = decode_base64("input", &input)?;
        let version = policy.encryption_version(item_version(item, data, default_version)?)?;
        let context = optional_base64(item, "context")?;
        let signer = SigningInput {
            policy: &policy,
            version: policy.version(version)?,
            context: context.as_deref().map(|c| &c[..]),
            options: &options,
        };
        let signature = signer.sign(&input, rng)?;
        let text = match options.marshaling {
            Marshaling::Jws if is_ecdsa(policy.kind) => {
                format!("vault:v{version}:{}", URL_SAFE_NO_PAD.encode(&signature))
            }
            _ => encode_versioned(version, &signature),
        };
        let mut result = Map::new();
        result.insert("signature".into(), json!(text));
        result.insert("key_version".into(), json!(version));
        Ok(result)
    })
}

/// Serves `verify/:name[/:hash_algorithm]`: `{input, signature | hmac}` to `{valid}`.
pub(super) fn verify(
    name: &str,
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let policy = key::load_existing(location, view, name)?;
    super::run_batch(data, |item| {
        let input = required(item, "input", "missing input to verify")?;
        let input = decode_base64("input", &input)?;
        let valid = match params::string(item, "hmac")? {
            Some(tag) => verify_hmac(&policy, url_algorithm, data, &input, &tag)?,
            None => verify_signature(&policy, url_algorithm, data, item, &input)?,
        };
        let mut result = Map::new();
        result.insert("valid".into(), json!(valid));
        Ok(result)
    })
}

/// The public key of an asymmetric key version: base64 for Ed25519, PEM for ECDSA and RSA.
pub(super) fn public_key_text(kind: KeyType, key: &KeyBytes) -> Result<String, Error> {
    let pem_error = |_| Error::internal("failed to encode a public key");
    match kind {
        KeyType::Ed25519 => Ok(STANDARD.encode(ed25519_key(key.expose())?.verifying_key())),
        KeyType::EcdsaP256 => p256::ecdsa::SigningKey::from_slice(key.expose())
            .map_err(|_| corrupt_key())?
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(pem_error),
        KeyType::EcdsaP384 => p384::ecdsa::SigningKey::from_slice(key.expose())
            .map_err(|_| corrupt_key())?
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(pem_error),
        KeyType::EcdsaP521 => p521::SecretKey::from_slice(key.expose())
            .map_err(|_| corrupt_key())?
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(pem_error),
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            RsaPublicKey::from(&rsa_key(key)?)
                .to_public_key_pem(LineEnding::LF)
                .map_err(pem_error)
        }
        other => Err(Error::bad_request(format!(
            "key type {} has no public key",
            other.name()
        ))),
    }
}

fn load_signing_key(
    location: &Location,
    view: &SecureView<'_>,
    name: &str,
) -> Result<Policy, Error> {
    let Some(policy) = key::load(location, view, name)? else {
        return Err(Error::bad_request(format!(
            "signing key not found: no key named {name:?} exists on this mount"
        )));
    };
    if !policy.kind.supports_signing() {
        return Err(Error::bad_request(format!(
            "key type {} does not support signing",
            policy.kind.name()
        )));
    }
    Ok(policy)
}

fn hmac_algorithm(
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
) -> Result<HashAlgorithm, Error> {
    let name = match url_algorithm {
        Some(name) => name.to_owned(),
        None => params::string(data, "algorithm")?.unwrap_or_else(|| "sha2-256".into()),
    };
    HashAlgorithm::parse_sha2_or_sha3("algorithm", &name)
}

fn compute_hmac(
    algorithm: HashAlgorithm,
    version: &KeyVersion,
    input: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    algorithm
        .hmac(version.hmac_key.expose(), input)
        .ok_or_else(|| Error::bad_request("unsupported algorithm for HMAC"))
}

fn verify_hmac(
    policy: &Policy,
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
    input: &[u8],
    tag: &str,
) -> Result<bool, Error> {
    let algorithm = hmac_algorithm(url_algorithm, data)?;
    let (version, payload) = split_versioned("hmac", tag)?;
    let key_version = policy.decryption_version(version)?;
    let expected = decode_base64("hmac", payload)?;
    let actual = compute_hmac(algorithm, key_version, input)?;
    Ok(bool::from(actual.as_slice().ct_eq(expected.as_slice())))
}

fn verify_signature(
    policy: &Policy,
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
    item: &Map<String, Value>,
    input: &[u8],
) -> Result<bool, Error> {
    if !policy.kind.supports_signing() {
        return Err(Error::bad_request(format!(
            "key type {} does not support verification",
            policy.kind.name()
        )));
    }
    let options = SignOptions::parse(url_algorithm, data)?;
    let signature = required(item, "signature", "missing signature or hmac to verify")?;
    let (version, payload) = split_versioned("signature", &signature)?;
    let key_version = policy.decryption_version(version)?;
    let jws = options.marshaling == Marshaling::Jws && is_ecdsa(policy.kind);
    let engine_result = if jws {
        URL_SAFE_NO_PAD.decode(payload)
    } else {
        STANDARD.decode(payload)
    };
    let raw = engine_result.map_err(|_| {
        Error::bad_request(format!(
            "invalid signature: could not decode base64 after the \"vault:v{version}:\" prefix"
        ))
    })?;
    let context = optional_base64(item, "context")?;
    let signer = SigningInput {
        policy,
        version: key_version,
        context: context.as_deref().map(|c| &c[..]),
        options: &options,
    };
    signer.verify(input, &raw)
}

fn is_ecdsa(kind: KeyType) -> bool {
    matches!(
        kind,
        KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521
    )
}

/// The encoding of an ECDSA signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marshaling {
    /// DER, the default.
    Asn1,
    /// `r || s`, base64url without padding, as JWS uses.
    Jws,
}

/// The RSA signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RsaScheme {
    /// RSASSA-PSS, the default.
    Pss,
    /// RSASSA-PKCS1-v1_5.
    Pkcs1v15,
}

/// The PSS salt length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SaltLength {
    /// The maximum salt when signing. Verifying accepts the maximum or the hash length.
    Auto,
    /// The hash length.
    Hash,
    /// This many bytes.
    Bytes(usize),
}

/// The request-wide options of `sign/` and `verify/`.
#[derive(Clone, Debug)]
struct SignOptions {
    hash: HashAlgorithm,
    prehashed: bool,
    marshaling: Marshaling,
    scheme: RsaScheme,
    salt: SaltLength,
}

impl SignOptions {
    fn parse(url_algorithm: Option<&str>, data: &Map<String, Value>) -> Result<SignOptions, Error> {
        let hash = match url_algorithm {
            Some(name) => name.to_owned(),
            None => params::string(data, "hash_algorithm")?
                .or(params::string(data, "algorithm")?)
                .unwrap_or_else(|| "sha2-256".into()),
        };
        let marshaling = match params::string(data, "marshaling_algorithm")?.as_deref() {
            None | Some("" | "asn1") => Marshaling::Asn1,
            Some("jws") => Marshaling::Jws,
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "unsupported marshaling_algorithm {other:?}: use \"asn1\" or \"jws\""
                )));
            }
        };
        let scheme = match params::string(data, "signature_algorithm")?.as_deref() {
            None | Some("" | "pss") => RsaScheme::Pss,
            Some("pkcs1v15") => RsaScheme::Pkcs1v15,
            Some(other) => {
                return Err(Error::bad_request(format!(
                    "unsupported signature_algorithm {other:?}: use \"pss\" or \"pkcs1v15\""
                )));
            }
        };
        Ok(SignOptions {
            hash: HashAlgorithm::parse("hash_algorithm", &hash)?,
            prehashed: params::boolean(data, "prehashed")?.unwrap_or(false),
            marshaling,
            scheme,
            salt: salt_length(data)?,
        })
    }

    /// Returns the bytes an ECDSA or RSA signature covers: the input itself when it is prehashed or
    /// the hash is `none`, else its digest.
    fn digest(&self, input: &[u8]) -> Vec<u8> {
        if self.prehashed {
            return input.to_vec();
        }
        self.hash.digest(input)
    }
}

fn salt_length(data: &Map<String, Value>) -> Result<SaltLength, Error> {
    let text = match data.get("salt_length") {
        None | Some(Value::Null) => return Ok(SaltLength::Auto),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(_) => return Err(invalid_salt_length("a non-string value")),
    };
    match text.as_str() {
        "" | "auto" => Ok(SaltLength::Auto),
        "hash" => Ok(SaltLength::Hash),
        number => number
            .parse::<usize>()
            .map(SaltLength::Bytes)
            .map_err(|_| invalid_salt_length(number)),
    }
}

fn invalid_salt_length(value: &str) -> Error {
    Error::bad_request(format!(
        "invalid salt_length {value:?}: use \"auto\", \"hash\" or a number of bytes"
    ))
}

/// One signature's key and settings.
struct SigningInput<'a> {
    policy: &'a Policy,
    version: &'a KeyVersion,
    context: Option<&'a [u8]>,
    options: &'a SignOptions,
}

impl SigningInput<'_> {
    fn sign(&self, input: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error> {
        let key = self.version.key.expose();
        match self.policy.kind {
            KeyType::Ed25519 => {
                self.reject_prehashed_ed25519()?;
                Ok(self.ed25519()?.sign(input).to_bytes().to_vec())
            }
            KeyType::EcdsaP256 => {
                let signing_key =
                    p256::ecdsa::SigningKey::from_slice(key).map_err(|_| corrupt_key())?;
                let signature: p256::ecdsa::Signature = signing_key
                    .sign_prehash(&self.ecdsa_digest(input))
                    .map_err(|_| short_digest())?;
                Ok(self.marshal_ecdsa(signature.to_der().as_bytes(), &signature.to_bytes()))
            }
            KeyType::EcdsaP384 => {
                let signing_key =
                    p384::ecdsa::SigningKey::from_slice(key).map_err(|_| corrupt_key())?;
                let signature: p384::ecdsa::Signature = signing_key
                    .sign_prehash(&self.ecdsa_digest(input))
                    .map_err(|_| short_digest())?;
                Ok(self.marshal_ecdsa(signature.to_der().as_bytes(), &signature.to_bytes()))
            }
            KeyType::EcdsaP521 => {
                let signing_key =
                    p521::ecdsa::SigningKey::from_slice(key).map_err(|_| corrupt_key())?;
                // NOTE: p521 0.13 signs prehashed input only with a random nonce, so P-521
                // signatures, unlike P-256 and P-384 ones, are not deterministic (RFC 6979).
                let mut rng = &mut *rng;
                let signature: p521::ecdsa::Signature = signing_key
                    .sign_prehash_with_rng(&mut rng, &self.ecdsa_digest(input))
                    .map_err(|_| short_digest())?;
                Ok(self.marshal_ecdsa(signature.to_der().as_bytes(), &signature.to_bytes()))
            }
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => self.sign_rsa(input, rng),
            other => Err(Error::bad_request(format!(
                "key type {} does not support signing",
                other.name()
            ))),
        }
    }

    fn verify(&self, input: &[u8], signature: &[u8]) -> Result<bool, Error> {
        let key = self.version.key.expose();
        match self.policy.kind {
            KeyType::Ed25519 => {
                self.reject_prehashed_ed25519()?;
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return Ok(false);
                };
                Ok(self
                    .ed25519()?
                    .verifying_key()
                    .verify(input, &signature)
                    .is_ok())
            }
            KeyType::EcdsaP256 => {
                let signing_key =
                    p256::ecdsa::SigningKey::from_slice(key).map_err(|_| corrupt_key())?;
                let parsed = match self.options.marshaling {
                    Marshaling::Asn1 => p256::ecdsa::Signature::from_der(signature),
                    Marshaling::Jws => p256::ecdsa::Signature::from_slice(signature),
                };
                let Ok(signature) = parsed else {
                    return Ok(false);
                };
                let digest = self.ecdsa_digest(input);
                Ok(signing_key
                    .verifying_key()
                    .verify_prehash(&digest, &signature)
                    .is_ok())
            }
            KeyType::EcdsaP384 => {
                let signing_key =
                    p384::ecdsa::SigningKey::from_slice(key).map_err(|_| corrupt_key())?;
                let parsed = match self.options.marshaling {
                    Marshaling::Asn1 => p384::ecdsa::Signature::from_der(signature),
                    Marshaling::Jws => p384::ecdsa::Signature::from_slice(signature),
                };
                let Ok(signature) = parsed else {
                    return Ok(false);
                };
                let digest = self.ecdsa_digest(input);
                Ok(signing_key
                    .verifying_key()
                    .verify_prehash(&digest, &signature)
                    .is_ok())
            }
            KeyType::EcdsaP521 => {
                let signing_key =
                    p521::ecdsa::SigningKey::from_slice(key).map_err(|_| corrupt_key())?;
                let parsed = match self.options.marshaling {
                    Marshaling::Asn1 => p521::ecdsa::Signature::from_der(signature),
                    Marshaling::Jws => p521::ecdsa::Signature::from_slice(signature),
                };
                let Ok(signature) = parsed else {
                    return Ok(false);
                };
                let digest = self.ecdsa_digest(input);
                Ok(p521::ecdsa::VerifyingKey::from(&signing_key)
                    .verify_prehash(&digest, &signature)
                    .is_ok())
            }
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                self.verify_rsa(input, signature)
            }
            other => Err(Error::bad_request(format!(
                "key type {} does not support verification",
                other.name()
            ))),
        }
    }

    fn reject_prehashed_ed25519(&self) -> Result<(), Error> {
        if self.options.prehashed {
            return Err(Error::bad_request(
                "prehashed input is not supported for ed25519 keys: send the message itself",
            ));
        }
        Ok(())
    }

    /// The Ed25519 key of this version, derived from the context for a derived policy.
    fn ed25519(&self) -> Result<ed25519_dalek::SigningKey, Error> {
        let seed = self.version.key.expose();
        if !self.policy.derived {
            return ed25519_key(seed);
        }
        let context = required_context(self.context)?;
        ed25519_key(&derive(seed, context, 32)?)
    }

    /// Returns the digest an ECDSA signature covers, left-padded with zeros to the curve's
    /// field size when shorter. The padded value is the same integer, which is how Go's ECDSA
    /// (and so Vault) reads a short hash such as SHA-256 with P-521.
    fn ecdsa_digest(&self, input: &[u8]) -> Vec<u8> {
        let digest = self.options.digest(input);
        let field_len = match self.policy.kind {
            KeyType::EcdsaP384 => 48,
            KeyType::EcdsaP521 => 66,
            _ => 32,
        };
        if digest.len() >= field_len {
            return digest;
        }
        let mut padded = vec![0; field_len - digest.len()];
        padded.extend_from_slice(&digest);
        padded
    }

    fn marshal_ecdsa(&self, der: &[u8], fixed: &[u8]) -> Vec<u8> {
        match self.options.marshaling {
            Marshaling::Asn1 => der.to_vec(),
            Marshaling::Jws => fixed.to_vec(),
        }
    }

    fn sign_rsa(&self, input: &[u8], rng: &mut dyn CryptoRngCore) -> Result<Vec<u8>, Error> {
        let private_key = rsa_key(&self.version.key)?;
        let digest = self.options.digest(input);
        let mut rng = rng;
        let signed = match self.options.scheme {
            RsaScheme::Pkcs1v15 => {
                private_key.sign_with_rng(&mut rng, pkcs1v15_padding(self.options.hash), &digest)
            }
            RsaScheme::Pss => {
                let hash_len = pss_hash_len(self.options.hash)?;
                let max_salt = max_pss_salt(&private_key, hash_len)?;
                let salt = match self.options.salt {
                    SaltLength::Auto => max_salt,
                    SaltLength::Hash => hash_len,
                    SaltLength::Bytes(bytes) => checked_salt(bytes, max_salt)?,
                };
                let padding = pss_padding(self.options.hash, salt)?;
                private_key.sign_with_rng(&mut rng, padding, &digest)
            }
        };
        signed.map_err(|error| {
            Error::bad_request(format!(
                "failed to sign with {}: {error}; check hash_algorithm, prehashed and \
                 salt_length",
                self.policy.kind.name()
            ))
        })
    }

    fn verify_rsa(&self, input: &[u8], signature: &[u8]) -> Result<bool, Error> {
        let private_key = rsa_key(&self.version.key)?;
        let public_key = RsaPublicKey::from(&private_key);
        let digest = self.options.digest(input);
        match self.options.scheme {
            RsaScheme::Pkcs1v15 => Ok(public_key
                .verify(pkcs1v15_padding(self.options.hash), &digest, signature)
                .is_ok()),
            RsaScheme::Pss => {
                let hash_len = pss_hash_len(self.options.hash)?;
                let max_salt = max_pss_salt(&private_key, hash_len)?;
                let salts = match self.options.salt {
                    SaltLength::Auto => vec![max_salt, hash_len],
                    SaltLength::Hash => vec![hash_len],
                    SaltLength::Bytes(bytes) => vec![checked_salt(bytes, max_salt)?],
                };
                for salt in salts {
                    let padding = pss_padding(self.options.hash, salt)?;
                    if public_key.verify(padding, &digest, signature).is_ok() {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }
}

fn ed25519_key(seed: &[u8]) -> Result<ed25519_dalek::SigningKey, Error> {
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(seed.try_into().map_err(|_| corrupt_key())?);
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

// NOTE: the rsa 0.9 crate's private-key operations are not constant time (advisory
// RUSTSEC-2023-0071, no fixed release in the 0.9 line). Signing turns on the crate's blinding
// with the request's RNG, but the advisory still applies.
fn rsa_key(key: &KeyBytes) -> Result<RsaPrivateKey, Error> {
    RsaPrivateKey::from_pkcs8_der(key.expose()).map_err(|_| corrupt_key())
}

fn pkcs1v15_padding(hash: HashAlgorithm) -> Pkcs1v15Sign {
    match hash {
        HashAlgorithm::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlgorithm::Sha2_224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlgorithm::Sha2_256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgorithm::Sha2_384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgorithm::Sha2_512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
        HashAlgorithm::Sha3_224 => Pkcs1v15Sign::new::<sha3::Sha3_224>(),
        HashAlgorithm::Sha3_256 => Pkcs1v15Sign::new::<sha3::Sha3_256>(),
        HashAlgorithm::Sha3_384 => Pkcs1v15Sign::new::<sha3::Sha3_384>(),
        HashAlgorithm::Sha3_512 => Pkcs1v15Sign::new::<sha3::Sha3_512>(),
        HashAlgorithm::None => Pkcs1v15Sign::new_unprefixed(),
    }
}

fn pss_padding(hash: HashAlgorithm, salt: usize) -> Result<Pss, Error> {
    Ok(match hash {
        HashAlgorithm::Sha1 => Pss::new_blinded_with_salt::<sha1::Sha1>(salt),
        HashAlgorithm::Sha2_224 => Pss::new_blinded_with_salt::<sha2::Sha224>(salt),
        HashAlgorithm::Sha2_256 => Pss::new_blinded_with_salt::<sha2::Sha256>(salt),
        HashAlgorithm::Sha2_384 => Pss::new_blinded_with_salt::<sha2::Sha384>(salt),
        HashAlgorithm::Sha2_512 => Pss::new_blinded_with_salt::<sha2::Sha512>(salt),
        HashAlgorithm::Sha3_224 => Pss::new_blinded_with_salt::<sha3::Sha3_224>(salt),
        HashAlgorithm::Sha3_256 => Pss::new_blinded_with_salt::<sha3::Sha3_256>(salt),
        HashAlgorithm::Sha3_384 => Pss::new_blinded_with_salt::<sha3::Sha3_384>(salt),
        HashAlgorithm::Sha3_512 => Pss::new_blinded_with_salt::<sha3::Sha3_512>(salt),
        HashAlgorithm::None => return Err(pss_needs_hash()),
    })
}

fn pss_hash_len(hash: HashAlgorithm) -> Result<usize, Error> {
    match hash {
        HashAlgorithm::None => Err(pss_needs_hash()),
        other => Ok(other.digest(&[]).len()),
    }
}

fn pss_needs_hash() -> Error {
    Error::bad_request(
        "hash_algorithm none is not supported with signature_algorithm pss: pick a hash or use \
         pkcs1v15",
    )
}

/// Returns the maximum PSS salt for the key and hash, which Go's `PSSSaltLengthAuto` signs with.
fn max_pss_salt(key: &RsaPrivateKey, hash_len: usize) -> Result<usize, Error> {
    use rsa::traits::PublicKeyParts;

    let em_len = (key.n().bits() - 1).div_ceil(8);
    em_len
        .checked_sub(hash_len + 2)
        .ok_or_else(|| Error::bad_request("the hash is too long for this RSA key"))
}

/// Rejects a salt longer than the key and hash leave room for, before the RSA crate adds it to
/// other lengths.
fn checked_salt(bytes: usize, max_salt: usize) -> Result<usize, Error> {
    if bytes > max_salt {
        return Err(Error::bad_request(format!(
            "invalid salt_length {bytes}: this key and hash allow at most {max_salt} bytes"
        )));
    }
    Ok(bytes)
}

fn corrupt_key() -> Error {
    Error::internal("stored transit key material is invalid")
}

fn short_digest() -> Error {
    Error::bad_request(
        "invalid input: a prehashed input is shorter than half the curve size; send the full \
         digest",
    )
}
