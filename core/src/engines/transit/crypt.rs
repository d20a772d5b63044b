//! `encrypt/`, `decrypt/`, `rewrap/` and `datakey/`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_core::CryptoRngCore;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::barrier::SecureView;
use crate::engines::Location;
use crate::engines::params;
use crate::error::Error;
use crate::request::Response;
use crate::time::Timestamp;

use super::aead::{self, decode_base64, encode_versioned, split_versioned};
use super::key::{self, Policy};

/// Serves `encrypt/:name`. A missing key is created first, as Vault does for callers with the
/// `create` capability (the ACL check requires `create` exactly when the key is missing).
pub(super) fn encrypt(
    now: Timestamp,
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let policy = match key::load(location, view, name)? {
        Some(policy) => policy,
        None => create_for_encryption(now, name, data, location, view)?,
    };
    check_encryption_support(&policy)?;
    let default_version = super::version_field(data, "key_version")?;
    let rng = view.rng();
    super::run_batch(data, |item| {
        let plaintext = required(item, "plaintext", "missing plaintext to encrypt")?;
        let plaintext = decode_base64("plaintext", &plaintext)?;
        let version = item_version(item, data, default_version)?;
        let sealed = encrypt_bytes(&policy, version, item, &plaintext, rng)?;
        Ok(sealed)
    })
}

/// Serves `decrypt/:name`.
pub(super) fn decrypt(
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let policy = key::load_existing(location, view, name)?;
    check_encryption_support(&policy)?;
    super::run_batch(data, |item| {
        let plaintext = decrypt_item(&policy, item)?;
        let mut result = Map::new();
        result.insert("plaintext".into(), json!(STANDARD.encode(&plaintext)));
        Ok(result)
    })
}

/// Serves `rewrap/:name`: decrypts each ciphertext and encrypts it again with the latest (or
/// the requested) version.
pub(super) fn rewrap(
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let policy = key::load_existing(location, view, name)?;
    check_encryption_support(&policy)?;
    let default_version = super::version_field(data, "key_version")?;
    let rng = view.rng();
    super::run_batch(data, |item| {
        let plaintext = decrypt_item(&policy, item)?;
        let version = item_version(item, data, default_version)?;
        encrypt_bytes(&policy, version, item, &plaintext, rng)
    })
}

/// Serves `datakey/plaintext/:name` and `datakey/wrapped/:name`: a new random key, encrypted
/// with the named key, and in clear too for `plaintext`.
pub(super) fn datakey(
    kind: &str,
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let include_plaintext = match kind {
        "plaintext" => true,
        "wrapped" => false,
        other => {
            return Err(Error::bad_request(format!(
                "invalid datakey type {other:?}: use datakey/plaintext/{name} or \
                 datakey/wrapped/{name}"
            )));
        }
    };
    let bits = params::uint(data, "bits")?.unwrap_or(256);
    if !matches!(bits, 128 | 256 | 512) {
        return Err(Error::bad_request(format!(
            "invalid bits {bits}: use 128, 256 or 512"
        )));
    }
    let policy = key::load_existing(location, view, name)?;
    check_encryption_support(&policy)?;
    let version = super::version_field(data, "key_version")?;
    let length = usize::try_from(bits / 8).expect("bits is at most 512");
    let mut datakey = Zeroizing::new(vec![0; length]);
    view.rng().fill_bytes(&mut datakey);
    let mut result = encrypt_bytes(&policy, version, data, &datakey, view.rng())?;
    if include_plaintext {
        result.insert("plaintext".into(), json!(STANDARD.encode(&datakey)));
    }
    Ok(Response::data(result))
}

/// Makes and stores the key that an `encrypt/` of a missing key creates: the request's
/// `type` (default `aes256-gcm96`), derived when the request carries a context.
fn create_for_encryption(
    now: Timestamp,
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Policy, Error> {
    let mut settings = super::manage::new_key_settings(data)?;
    if !settings.kind.supports_encryption() {
        return Err(Error::bad_request(format!(
            "key type {} not supported for this operation: encrypt/ creates only encryption \
             keys",
            settings.kind.name()
        )));
    }
    let first = super::first_item(data);
    settings.derived = params::string(first, "context")?.is_some_and(|text| !text.is_empty());
    let policy = Policy::create(name, &settings, now, view.rng())?;
    key::save(location, view, &policy)?;
    Ok(policy)
}

fn check_encryption_support(policy: &Policy) -> Result<(), Error> {
    if policy.kind.supports_encryption() {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "key {:?} of type {} does not support encryption or decryption",
        policy.name,
        policy.kind.name()
    )))
}

/// Encrypts `plaintext` with `version` (0 for the latest) and returns `{ciphertext,
/// key_version}`. The context, associated data and nonce come from `item`.
fn encrypt_bytes(
    policy: &Policy,
    version: u32,
    item: &Map<String, Value>,
    plaintext: &[u8],
    rng: &mut dyn CryptoRngCore,
) -> Result<Map<String, Value>, Error> {
    if params::string(item, "nonce")?.is_some_and(|nonce| !nonce.is_empty()) {
        return Err(Error::bad_request(
            "provided nonce not allowed for this key: nonces are drawn at random, or derived \
             from the plaintext for convergent keys",
        ));
    }
    let version = policy.encryption_version(version)?;
    let context = optional_base64(item, "context")?;
    let associated_data = optional_base64(item, "associated_data")?;
    let key = policy.symmetric_key(policy.version(version)?, context.as_deref().map(|c| &c[..]))?;
    let ciphertext = aead::seal(
        policy,
        &key,
        context.as_deref().map(|c| &c[..]),
        plaintext,
        associated_data.as_deref().map_or(&[][..], |a| &a[..]),
        rng,
    )?;
    let mut result = Map::new();
    result.insert(
        "ciphertext".into(),
        json!(encode_versioned(version, &ciphertext)),
    );
    result.insert("key_version".into(), json!(version));
    Ok(result)
}

/// Decrypts the `ciphertext` of one item after checking its version against the policy.
fn decrypt_item(policy: &Policy, item: &Map<String, Value>) -> Result<Zeroizing<Vec<u8>>, Error> {
    let ciphertext = required(item, "ciphertext", "missing ciphertext to decrypt")?;
    let (version, payload) = split_versioned("ciphertext", &ciphertext)?;
    let key_version = policy.decryption_version(version)?;
    let raw = STANDARD.decode(payload).map_err(|_| {
        Error::bad_request(format!(
            "invalid ciphertext: could not decode base64 after the \"vault:v{version}:\" prefix"
        ))
    })?;
    let context = optional_base64(item, "context")?;
    let associated_data = optional_base64(item, "associated_data")?;
    let key = policy.symmetric_key(key_version, context.as_deref().map(|c| &c[..]))?;
    aead::open(
        policy,
        version.max(1),
        &key,
        &raw,
        associated_data.as_deref().map_or(&[][..], |a| &a[..]),
    )
}

/// Returns the version an item requests: its own `key_version`, else the request's.
pub(super) fn item_version(
    item: &Map<String, Value>,
    data: &Map<String, Value>,
    default_version: u32,
) -> Result<u32, Error> {
    if std::ptr::eq(item, data) {
        return Ok(default_version);
    }
    match super::version_field(item, "key_version")? {
        0 => Ok(default_version),
        version => Ok(version),
    }
}

/// Reads a required string field, or fails with a 400 with `missing` as the message.
pub(super) fn required(
    data: &Map<String, Value>,
    field: &str,
    missing: &str,
) -> Result<Zeroizing<String>, Error> {
    match params::string(data, field)? {
        Some(value) => Ok(Zeroizing::new(value)),
        None => Err(Error::bad_request(missing)),
    }
}

/// Decodes an optional base64 field such as `context`. Empty counts as absent.
pub(super) fn optional_base64(
    data: &Map<String, Value>,
    field: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    match params::string(data, field)? {
        Some(text) if !text.is_empty() => decode_base64(field, &text).map(Some),
        _ => Ok(None),
    }
}
