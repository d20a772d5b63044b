//! Key management: `keys/` list, `keys/:name` create, read and delete, `keys/:name/config`,
//! `keys/:name/rotate` and `keys/:name/trim`.

use serde_json::{Map, Value, json};

use crate::barrier::SecureView;
use crate::engines::Location;
use crate::engines::params;
use crate::error::Error;
use crate::request::{Logical, Operation, Response};
use crate::time::Timestamp;

use super::key::{self, KeyType, NewKey, Policy};

/// Serves `keys/...`; `rest` is the path after `keys/`.
pub(super) fn handle(
    now: Timestamp,
    operation: Operation,
    rest: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    if rest.is_empty() {
        return match operation {
            Operation::List => list(location, view),
            _ => Err(Error::unsupported_operation()),
        };
    }
    let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
    let name = super::key_name(name)?;
    match (action, operation) {
        ("", Operation::Update) => create(now, name, data, location, view),
        ("", Operation::Read) => read(name, location, view),
        ("", Operation::Delete) => delete(name, location, view),
        ("config", Operation::Update) => configure(name, data, location, view),
        ("rotate", Operation::Update) => rotate(now, name, location, view),
        ("trim", Operation::Update) => trim(name, data, location, view),
        ("" | "config" | "rotate" | "trim", _) => Err(Error::unsupported_operation()),
        (other, _) => Err(Error::bad_request(format!(
            "unsupported key action {other:?}: use keys/{name}, keys/{name}/config, \
             keys/{name}/rotate or keys/{name}/trim"
        ))),
    }
}

/// Reads the settings of a new key from a create request or an `encrypt/` upsert.
pub(super) fn new_key_settings(data: &Map<String, Value>) -> Result<NewKey, Error> {
    let kind = match params::string(data, "type")? {
        Some(name) if !name.is_empty() => KeyType::parse(&name)?,
        _ => KeyType::Aes256Gcm96,
    };
    let mut settings = NewKey::of_type(kind);
    settings.derived = params::boolean(data, "derived")?.unwrap_or(false);
    settings.convergent_encryption =
        params::boolean(data, "convergent_encryption")?.unwrap_or(false);
    settings.exportable = params::boolean(data, "exportable")?.unwrap_or(false);
    settings.allow_plaintext_backup =
        params::boolean(data, "allow_plaintext_backup")?.unwrap_or(false);
    settings.auto_rotate_period = auto_rotate_period(data)?.unwrap_or(0);
    if let Some(size) = params::uint(data, "key_size")?.filter(|size| *size != 0) {
        if kind != KeyType::Hmac {
            return Err(Error::bad_request(format!(
                "key_size is only valid for hmac keys, not for type {}",
                kind.name()
            )));
        }
        if !(32..=512).contains(&size) {
            return Err(Error::bad_request(format!(
                "invalid key_size {size}: HMAC keys are 32 to 512 bytes"
            )));
        }
        settings.key_size = usize::try_from(size).expect("key_size is at most 512");
    }
    Ok(settings)
}

fn auto_rotate_period(data: &Map<String, Value>) -> Result<Option<u64>, Error> {
    let Some(period) = params::duration(data, "auto_rotate_period")? else {
        return Ok(None);
    };
    let seconds = period.as_secs();
    if seconds != 0 && seconds < 3600 {
        return Err(Error::bad_request(format!(
            "invalid auto_rotate_period {seconds}s: use 0 to disable or at least 1h"
        )));
    }
    // NOTE: the period is stored and reported, but no timer rotates keys yet.
    Ok(Some(seconds))
}

fn list(location: &Location, view: &SecureView<'_>) -> Result<Response, Error> {
    let names = key::list(location, view)?;
    if names.is_empty() {
        return Err(Error::not_found());
    }
    Ok(Response::data_value(json!({ "keys": names })))
}

/// Creates a key, or returns the existing one unchanged with a warning.
fn create(
    now: Timestamp,
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let settings = new_key_settings(data)?;
    if let Some(existing) = key::load(location, view, name)? {
        let mut logical = Logical::with_data(describe(&existing));
        logical.warnings.push(format!("key {name} already existed"));
        return Ok(Response::logical(logical));
    }
    let policy = Policy::create(name, &settings, now, view.rng())?;
    key::save(location, view, &policy)?;
    Ok(Response::data(describe(&policy)))
}

fn read(name: &str, location: &Location, view: &SecureView<'_>) -> Result<Response, Error> {
    match key::load(location, view, name)? {
        Some(policy) => Ok(Response::data(describe(&policy))),
        None => Err(Error::not_found()),
    }
}

fn delete(name: &str, location: &Location, view: &mut SecureView<'_>) -> Result<Response, Error> {
    let Some(policy) = key::load(location, view, name)? else {
        // Blind, so that a node whose copy lags still forwards the delete.
        key::delete(location, view, name)?;
        return Err(Error::bad_request(format!(
            "could not delete key; not found: no key named {name:?}"
        )));
    };
    if !policy.deletion_allowed {
        return Err(Error::bad_request(format!(
            "deletion is not allowed for this key: set deletion_allowed=true with \
             keys/{name}/config first"
        )));
    }
    key::delete(location, view, name)?;
    Ok(Response::NoContent)
}

fn configure(
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let mut policy = key::load_existing(location, view, name)?;
    let warnings = set_min_versions(&mut policy, data)?;
    set_flags(&mut policy, data)?;
    key::save(location, view, &policy)?;
    let mut logical = Logical::with_data(describe(&policy));
    logical.warnings = warnings;
    Ok(Response::logical(logical))
}

/// Applies `min_decryption_version` and `min_encryption_version` and returns the warnings.
fn set_min_versions(policy: &mut Policy, data: &Map<String, Value>) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    if params::uint(data, "min_decryption_version")?.is_some() {
        let mut version = super::version_field(data, "min_decryption_version")?;
        if version == 0 {
            version = 1;
            warnings.push("min_decryption_version 0 means 1, because versions start at 1".into());
        }
        if version > policy.latest_version {
            return Err(Error::bad_request(format!(
                "cannot set min decryption version of {version}, latest key version is {}",
                policy.latest_version
            )));
        }
        if version < policy.min_available_version {
            return Err(Error::bad_request(format!(
                "cannot set min decryption version of {version}, versions below {} were trimmed",
                policy.min_available_version
            )));
        }
        policy.min_decryption_version = version;
    }
    if params::uint(data, "min_encryption_version")?.is_some() {
        let version = super::version_field(data, "min_encryption_version")?;
        if version > policy.latest_version {
            return Err(Error::bad_request(format!(
                "cannot set min encryption version of {version}, latest key version is {}",
                policy.latest_version
            )));
        }
        policy.min_encryption_version = version;
    }
    if policy.min_encryption_version != 0
        && policy.min_encryption_version < policy.min_decryption_version
    {
        return Err(Error::bad_request(format!(
            "min encryption version should not be less than min decryption version: \
             min_encryption_version {}, min_decryption_version {}",
            policy.min_encryption_version, policy.min_decryption_version
        )));
    }
    Ok(warnings)
}

/// Applies `deletion_allowed`, `exportable`, `allow_plaintext_backup` and
/// `auto_rotate_period`.
fn set_flags(policy: &mut Policy, data: &Map<String, Value>) -> Result<(), Error> {
    if let Some(allowed) = params::boolean(data, "deletion_allowed")? {
        policy.deletion_allowed = allowed;
    }
    if let Some(exportable) = params::boolean(data, "exportable")? {
        if policy.exportable && !exportable {
            return Err(Error::bad_request(
                "exportable cannot be turned off once it is set",
            ));
        }
        policy.exportable = exportable;
    }
    if let Some(allowed) = params::boolean(data, "allow_plaintext_backup")? {
        if policy.allow_plaintext_backup && !allowed {
            return Err(Error::bad_request(
                "allow_plaintext_backup cannot be turned off once it is set",
            ));
        }
        policy.allow_plaintext_backup = allowed;
    }
    if let Some(period) = auto_rotate_period(data)? {
        policy.auto_rotate_period = period;
    }
    Ok(())
}

fn rotate(
    now: Timestamp,
    name: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let mut policy = key::load_existing(location, view, name)?;
    policy.rotate(now, view.rng())?;
    key::save(location, view, &policy)?;
    Ok(Response::data(describe(&policy)))
}

/// Deletes the versions below `min_available_version`, which must not exceed the minimum
/// encryption and decryption versions.
fn trim(
    name: &str,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let mut policy = key::load_existing(location, view, name)?;
    if params::uint(data, "min_available_version")?.is_none() {
        return Err(Error::bad_request("missing min_available_version"));
    }
    let version = super::version_field(data, "min_available_version")?;
    let reject = |message: String| Err(Error::bad_request(message));
    if version == 0 {
        return reject("minimum available version cannot be 0".into());
    }
    if policy.min_encryption_version == 0 {
        return reject(format!(
            "minimum available version cannot be set when minimum encryption version is not \
             set: set min_encryption_version with keys/{name}/config first"
        ));
    }
    if version > policy.min_encryption_version {
        return reject(format!(
            "cannot set minimum available version greater than minimum encryption version: \
             {version} > {}",
            policy.min_encryption_version
        ));
    }
    if version > policy.min_decryption_version {
        return reject(format!(
            "cannot set minimum available version greater than minimum decryption version: \
             {version} > {}",
            policy.min_decryption_version
        ));
    }
    if version < policy.min_available_version {
        return reject(format!(
            "cannot set minimum available version less than the current minimum available \
             version: {version} < {}",
            policy.min_available_version
        ));
    }
    policy.versions.retain(|number, _| *number >= version);
    policy.min_available_version = version;
    key::save(location, view, &policy)?;
    Ok(Response::data(describe(&policy)))
}

/// Builds the `data` of a key read, in Vault's shape.
pub(super) fn describe(policy: &Policy) -> Map<String, Value> {
    let kind = policy.kind;
    let mut data = json!({
        "name": policy.name,
        "type": kind.name(),
        "keys": key::versions_json(policy),
        "latest_version": policy.latest_version,
        "min_available_version": policy.min_available_version,
        "min_decryption_version": policy.min_decryption_version,
        "min_encryption_version": policy.min_encryption_version,
        "deletion_allowed": policy.deletion_allowed,
        "derived": policy.derived,
        "exportable": policy.exportable,
        "allow_plaintext_backup": policy.allow_plaintext_backup,
        "auto_rotate_period": policy.auto_rotate_period,
        "imported_key": false,
        "supports_encryption": kind.supports_encryption(),
        "supports_decryption": kind.supports_encryption(),
        "supports_derivation": kind.supports_derivation(),
        "supports_signing": kind.supports_signing(),
    });
    if policy.derived {
        data["kdf"] = json!("hkdf_sha256");
        data["convergent_encryption"] = json!(policy.convergent_encryption);
    }
    if kind == KeyType::Hmac {
        data["key_size"] = json!(policy.hmac_key_size);
    }
    match data {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
