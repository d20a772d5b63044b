//! Symmetric encryption with a key version, and the `vault:v<N>:<base64>` format that
//! ciphertexts, signatures and HMACs share.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Error;

use super::key::{KeyType, Policy, derive};

/// Bytes of the nonce at the start of a ciphertext, except for XChaCha20-Poly1305.
const NONCE_LEN: usize = 12;
/// Bytes of the nonce at the start of an XChaCha20-Poly1305 ciphertext.
const XNONCE_LEN: usize = 24;
/// Bytes of the authentication tag at the end of every ciphertext.
const TAG_LEN: usize = 16;

/// Formats `bytes` as `vault:v<version>:<base64>`.
pub(super) fn encode_versioned(version: u32, bytes: &[u8]) -> String {
    format!("vault:v{version}:{}", STANDARD.encode(bytes))
}

/// Splits a `vault:v<N>:<payload>` value into the version and the payload text. `field` names
/// the value in errors.
pub(super) fn split_versioned<'a>(field: &str, value: &'a str) -> Result<(u32, &'a str), Error> {
    let Some(rest) = value.strip_prefix("vault:") else {
        return Err(Error::bad_request(format!(
            "invalid {field}: no prefix: the value must start with \"vault:v<version>:\""
        )));
    };
    let Some((version, payload)) = rest.split_once(':') else {
        return Err(Error::bad_request(format!(
            "invalid {field}: wrong number of fields: expected \"vault:v<version>:<base64>\""
        )));
    };
    let number = version
        .strip_prefix('v')
        .and_then(|digits| digits.parse::<u32>().ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "invalid {field}: version number could not be decoded from {version:?}"
            ))
        })?;
    Ok((number, payload))
}

/// Decodes a standard base64 field, naming it in the error.
pub(super) fn decode_base64(field: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(text.len()));
    STANDARD
        .decode_vec(text, &mut bytes)
        .map_err(|_| Error::bad_request(format!("failed to base64-decode {field}")))?;
    Ok(bytes)
}

/// Encrypts `plaintext` with `key` of `kind`. The nonce comes from `rng`, or for a convergent
/// key from an HMAC of the plaintext, so equal inputs give equal ciphertexts.
pub(super) fn seal(
    policy: &Policy,
    key: &[u8],
    context: Option<&[u8]>,
    plaintext: &[u8],
    associated_data: &[u8],
    rng: &mut dyn CryptoRngCore,
) -> Result<Vec<u8>, Error> {
    let length = nonce_len(policy.kind);
    let mut nonce = vec![0; length];
    if policy.convergent_encryption {
        let derived = convergent_nonce(key, context.unwrap_or_default(), plaintext)?;
        nonce.copy_from_slice(&derived[..length]);
    } else {
        rng.fill_bytes(&mut nonce);
    }
    let payload = Payload {
        msg: plaintext,
        aad: associated_data,
    };
    let sealed = match policy.kind {
        KeyType::Aes128Gcm96 => seal_with::<Aes128Gcm>(key, &nonce, payload)?,
        KeyType::Aes256Gcm96 => seal_with::<Aes256Gcm>(key, &nonce, payload)?,
        KeyType::ChaCha20Poly1305 => seal_with::<ChaCha20Poly1305>(key, &nonce, payload)?,
        KeyType::XChaCha20Poly1305 => seal_with::<XChaCha20Poly1305>(key, &nonce, payload)?,
        other => return Err(unsupported(other, "encryption")),
    };
    let mut output = Vec::with_capacity(nonce.len() + sealed.len());
    output.extend_from_slice(&nonce);
    output.extend_from_slice(&sealed);
    Ok(output)
}

/// Decrypts the raw bytes of a ciphertext (nonce, ciphertext, tag).
pub(super) fn open(
    policy: &Policy,
    version: u32,
    key: &[u8],
    ciphertext: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let nonce_len = nonce_len(policy.kind);
    if ciphertext.len() < nonce_len + TAG_LEN {
        return Err(Error::bad_request(format!(
            "invalid ciphertext: {} bytes is shorter than the {}-byte minimum (a {nonce_len}-byte \
             nonce and a {TAG_LEN}-byte tag)",
            ciphertext.len(),
            nonce_len + TAG_LEN
        )));
    }
    let (nonce, sealed) = ciphertext.split_at(nonce_len);
    let payload = Payload {
        msg: sealed,
        aad: associated_data,
    };
    let opened = match policy.kind {
        KeyType::Aes128Gcm96 => open_with::<Aes128Gcm>(key, nonce, payload)?,
        KeyType::Aes256Gcm96 => open_with::<Aes256Gcm>(key, nonce, payload)?,
        KeyType::ChaCha20Poly1305 => open_with::<ChaCha20Poly1305>(key, nonce, payload)?,
        KeyType::XChaCha20Poly1305 => open_with::<XChaCha20Poly1305>(key, nonce, payload)?,
        other => return Err(unsupported(other, "decryption")),
    };
    opened.map(Zeroizing::new).map_err(|_| {
        Error::bad_request(format!(
            "invalid ciphertext: unable to decrypt with version {version} of key {:?}: the \
             ciphertext was made by another key, or with another context or associated data, \
             or it was changed",
            policy.name
        ))
    })
}

/// Builds the 400 for an operation the key type does not support.
pub(super) fn unsupported(kind: KeyType, operation: &str) -> Error {
    Error::bad_request(format!(
        "{operation} is not supported by key type {}",
        kind.name()
    ))
}

fn nonce_len(kind: KeyType) -> usize {
    match kind {
        KeyType::XChaCha20Poly1305 => XNONCE_LEN,
        _ => NONCE_LEN,
    }
}

fn cipher<C: KeyInit>(key: &[u8]) -> Result<C, Error> {
    C::new_from_slice(key).map_err(|_| Error::internal("stored key has the wrong length"))
}

/// Encrypts with cipher `C`. `nonce` has the length [`nonce_len`] gives for the key type.
fn seal_with<C: KeyInit + Aead>(
    key: &[u8],
    nonce: &[u8],
    payload: Payload<'_, '_>,
) -> Result<Vec<u8>, Error> {
    let nonce = aes_gcm::aead::Nonce::<C>::from_slice(nonce);
    cipher::<C>(key)?
        .encrypt(nonce, payload)
        .map_err(|_| Error::internal("encryption failed"))
}

/// Decrypts with cipher `C`. `Ok(Err(()))` means the ciphertext did not authenticate.
fn open_with<C: KeyInit + Aead + AeadCore>(
    key: &[u8],
    nonce: &[u8],
    payload: Payload<'_, '_>,
) -> Result<Result<Vec<u8>, ()>, Error> {
    let nonce = aes_gcm::aead::Nonce::<C>::from_slice(nonce);
    Ok(cipher::<C>(key)?.decrypt(nonce, payload).map_err(|_| ()))
}

/// Computes the nonce of a convergent encryption: HMAC-SHA256 of the plaintext under a key
/// derived from the encryption key and the context. The caller cuts it to the nonce length.
fn convergent_nonce(key: &[u8], context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut info = b"transit convergent nonce\0".to_vec();
    info.extend_from_slice(context);
    let nonce_key = derive(key, &info, 32)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&nonce_key)
        .map_err(|_| Error::internal("HMAC rejected its key"))?;
    mac.update(plaintext);
    Ok(mac.finalize().into_bytes().to_vec())
}
