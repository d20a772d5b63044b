//! `export/:key_type/:name[/:version]`: key material in clear, for keys created `exportable`,
//! and public keys of any asymmetric key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, LineEnding};
use serde_json::{Map, json};
use zeroize::Zeroizing;

use crate::barrier::SecureView;
use crate::engines::Location;
use crate::error::Error;
use crate::request::Response;

use super::key::{self, KeyType, KeyVersion, Policy};

/// The key that `export/` returns for each version, named by the path's key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Export {
    Encryption,
    Signing,
    Hmac,
    Public,
}

/// Serves `export/...`; `rest` is the path after `export/`.
pub(super) fn handle(
    rest: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let mut segments = rest.splitn(3, '/');
    let kind = segments.next().unwrap_or_default();
    let name = super::key_name(segments.next().unwrap_or_default())?;
    let version = segments.next();
    let export = match kind {
        "encryption-key" => Export::Encryption,
        "signing-key" => Export::Signing,
        "hmac-key" => Export::Hmac,
        "public-key" => Export::Public,
        other => {
            return Err(Error::bad_request(format!(
                "invalid export type {other:?}: use encryption-key, signing-key, hmac-key or \
                 public-key"
            )));
        }
    };
    let policy = key::load_existing(location, view, name)?;
    if export != Export::Public && !policy.exportable {
        return Err(Error::bad_request(format!(
            "private key material is not exportable: key {name:?} was not created with \
             exportable=true"
        )));
    }
    check_type(&policy, export)?;
    let mut keys = Map::new();
    for number in versions(&policy, version)? {
        let text = export_version(&policy, policy.version(number)?, export)?;
        keys.insert(number.to_string(), json!(*text));
    }
    Ok(Response::data_value(json!({
        "name": policy.name,
        "type": policy.kind.name(),
        "keys": keys,
    })))
}

fn check_type(policy: &Policy, export: Export) -> Result<(), Error> {
    let supported = match export {
        Export::Encryption => policy.kind.supports_encryption(),
        Export::Signing | Export::Public => policy.kind.supports_signing(),
        Export::Hmac => true,
    };
    if supported {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "key type {} has no {} to export",
        policy.kind.name(),
        match export {
            Export::Encryption => "encryption key",
            Export::Signing => "signing key",
            Export::Hmac => "HMAC key",
            Export::Public => "public key",
        }
    )))
}

/// Returns the versions to export: all, `latest` or one number.
fn versions(policy: &Policy, version: Option<&str>) -> Result<Vec<u32>, Error> {
    match version {
        None | Some("") => Ok(policy.versions.keys().copied().collect()),
        Some("latest") => Ok(vec![policy.latest_version]),
        Some(text) => {
            let number = text
                .parse::<u32>()
                .ok()
                .filter(|number| policy.versions.contains_key(number));
            match number {
                Some(number) => Ok(vec![number]),
                None => Err(Error::bad_request(format!(
                    "invalid version {text:?}: use \"latest\" or a version from 1 to {}",
                    policy.latest_version
                ))),
            }
        }
    }
}

fn export_version(
    policy: &Policy,
    version: &KeyVersion,
    export: Export,
) -> Result<Zeroizing<String>, Error> {
    let key = version.key.expose();
    match (export, policy.kind) {
        (Export::Encryption, _) => Ok(Zeroizing::new(STANDARD.encode(key))),
        (Export::Hmac, _) => Ok(Zeroizing::new(STANDARD.encode(version.hmac_key.expose()))),
        (Export::Public, kind) => {
            super::sign::public_key_text(kind, &version.key).map(Zeroizing::new)
        }
        (Export::Signing, KeyType::Ed25519) => {
            let seed: [u8; 32] = key.try_into().map_err(|_| corrupt_key())?;
            let signing_key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let pair = Zeroizing::new(signing_key.to_keypair_bytes());
            Ok(Zeroizing::new(STANDARD.encode(*pair)))
        }
        (Export::Signing, KeyType::EcdsaP256) => p256::SecretKey::from_slice(key)
            .map_err(|_| corrupt_key())?
            .to_sec1_pem(LineEnding::LF)
            .map_err(|_| encode_error()),
        (Export::Signing, KeyType::EcdsaP384) => p384::SecretKey::from_slice(key)
            .map_err(|_| corrupt_key())?
            .to_sec1_pem(LineEnding::LF)
            .map_err(|_| encode_error()),
        (Export::Signing, KeyType::EcdsaP521) => p521::SecretKey::from_slice(key)
            .map_err(|_| corrupt_key())?
            .to_sec1_pem(LineEnding::LF)
            .map_err(|_| encode_error()),
        (Export::Signing, _) => rsa::RsaPrivateKey::from_pkcs8_der(key)
            .map_err(|_| corrupt_key())?
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|_| encode_error()),
    }
}

fn encode_error() -> Error {
    Error::internal("failed to encode a private key")
}

fn corrupt_key() -> Error {
    Error::internal("stored transit key material is invalid")
}
